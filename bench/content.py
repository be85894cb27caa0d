"""How long the information-only check takes per newsletter item (target: well under 5 ms for 2,000 chars).

Builds 2,000-character texts from the test corpus (Japanese and English, informational and salesy, and a
full-width variant that takes the NFKC mapping path), checks each many times with rules loaded once, and
prints the median and worst time per item. Run: /work/venv/bin/python bench/content.py
"""

from __future__ import annotations

import statistics
import time
import unicodedata
from pathlib import Path

from nurture.checks import check_text, load_rules

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "checks" / "corpus"
SIZE = 2000
ROUNDS = 200


def sample(kind: str, language: str) -> str:
    text = "\n\n".join(p.read_text("utf-8") for p in sorted((CORPUS / kind).glob(f"{language}-*.txt")))
    return text[:SIZE]


def to_full_width(text: str) -> str:
    # ASCII letters/digits/symbols -> U+FF01..U+FF5E, so NFKC changes the text and findings need the map.
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def main() -> None:
    start = time.perf_counter()
    rules = load_rules()
    print(f"load + validate {len(rules)} rules: {(time.perf_counter() - start) * 1000:.1f} ms (once per process)")
    cases = {}
    for kind in ("informational", "salesy"):
        for language in ("ja", "en"):
            cases[f"{language} {kind}"] = sample(kind, language)
    cases["en salesy, full-width"] = to_full_width(cases["en salesy"])
    assert unicodedata.normalize("NFKC", cases["en salesy, full-width"]) != cases["en salesy, full-width"]
    print(f"{'item (2,000 chars)':<26} {'findings':>8} {'min ms':>8} {'median ms':>10} {'max ms':>8}")
    for name, text in cases.items():
        times = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            found = check_text(text, rules=rules)
            times.append((time.perf_counter() - t0) * 1000)
        print(f"{name:<26} {len(found):>8} {min(times):>8.3f} {statistics.median(times):>10.3f} {max(times):>8.3f}")


if __name__ == "__main__":
    main()
