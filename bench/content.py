"""The information-only check, measured on text it has never seen, and its speed per newsletter item.

1. Held-out accuracy (issue 14). The labelled corpus (tests/checks/corpus/items-{ja,en}.jsonl) is split
   into K stratified folds with a fixed seed. For each fold the pitch model is fitted on the other K-1 folds
   only (nurture.checks.fit: weights, and its thresholds chosen by an inner cross-validation inside those
   folds; the held-out fold influences nothing) and the check (shipped rules + that model) judges the
   held-out fold; an item counts as flagged when the check reports at least one *error* (warnings do not
   count). Printed per language: recall and precision of the combined check, of the rules alone (the check
   before issue 14) and of the model's own errors.
1b. Later items (the stricter figure): fitted on the items written before a batch (``--batch``, default s5),
   judging that batch.
2. Cross-corpus: the model trained on the whole new corpus judges the older hand-written mails in
   tests/checks/corpus/{salesy,informational}/*.txt (whole mails with greeting, footer and line wraps, written
   by another author before this corpus existed).
3. Speed: 2,000-character items (Japanese and English, informational and salesy, and a full-width variant),
   rules loaded once; the median time of `check_text` against a bare baseline in the same run (NFKC plus
   lowercasing the same text: what any check must at least do).

Run: /work/venv/bin/python bench/content.py [--folds 5] [--seed 14] [--rounds 200] [--only held-out|later|cross|speed]
     /work/venv/bin/python bench/content.py --write-model   (refit nurture/checks/model.json on the corpus)
     --language ja|en runs one language; --without-batch s6 leaves a corpus batch out (the figure without it).
"""

from __future__ import annotations

import argparse
import statistics
import time
import unicodedata
from collections import Counter

from nurture.checks import content
from nurture.checks.fit import fit, folds
from nurture.checks.model import CORPUS_DIR, PitchModel, read_corpus, save
from nurture.checks.rules import load_rules, lower_ascii

SIZE = 2000
LANGUAGES = ("ja", "en")


class Tally:
    def __init__(self) -> None:
        self.tp = self.fp = self.fn = self.tn = 0
        self.missed: Counter[str] = Counter()
        self.false: list[str] = []

    def add(self, salesy: bool, flagged: bool, row: dict[str, str]) -> None:
        if salesy and flagged:
            self.tp += 1
        elif salesy:
            self.fn += 1
            self.missed[row.get("class", "?")] += 1
        elif flagged:
            self.fp += 1
            self.false.append(f"{row.get('id', '?')} [{row.get('class', '?')}] {row['text'][:70]!r}")
        else:
            self.tn += 1

    @property
    def recall(self) -> float:
        return self.tp / ((self.tp + self.fn) or 1)

    @property
    def precision(self) -> float:
        return self.tp / ((self.tp + self.fp) or 1)

    def line(self) -> str:
        return (
            f"recall {self.recall:.3f} ({self.tp}/{self.tp + self.fn})  precision {self.precision:.3f} "
            f"({self.tp}/{self.tp + self.fp})  fp {self.fp}  fn {self.fn}"
        )


def flagged(text: str, language: str, model: dict[str, PitchModel]) -> bool:
    return bool(content.errors(content.check_text(text, language=language, model=model)))


def model_alone(text: str, language: str, model: PitchModel) -> bool:
    """The model's own error without rule findings (rule hits still feed it as features)."""
    return content.pitch_probability(text, language, model) >= model.error_at


def judge(rows: list[dict[str, str]], language: str, model: PitchModel, tallies: dict[str, Tally]) -> None:
    for row in rows:
        salesy = row["label"] == "salesy"
        tallies["check"].add(salesy, flagged(row["text"], language, {language: model}), row)
        tallies["rules alone"].add(salesy, flagged(row["text"], language, {}), row)
        tallies["model alone"].add(salesy, model_alone(row["text"], language, model), row)


def held_out(k: int, seed: int, verbose: bool) -> dict[str, dict[str, Tally]]:
    results: dict[str, dict[str, Tally]] = {}
    for language in LANGUAGES:
        rows = read_corpus(language)
        parts = folds(rows, k, seed)
        tallies = {"check": Tally(), "rules alone": Tally(), "model alone": Tally()}
        started = time.perf_counter()
        chosen = []
        for i, test in enumerate(parts):
            training = [r for j, part in enumerate(parts) if j != i for r in part]
            model = fit(training, language)  # thresholds from inner folds of `training` only
            chosen.append(f"{model.error_at:.3f}/{model.veto_below:.2f}")
            judge(test, language, model, tallies)
        n_s = sum(r["label"] == "salesy" for r in rows)
        print(
            f"\n{language}: {len(rows)} items ({n_s} salesy, {len(rows) - n_s} informational), {k}-fold, "
            f"seed {seed}, {time.perf_counter() - started:.1f} s"
        )
        print("  thresholds chosen inside each training part (error_at/veto_below):", ", ".join(chosen))
        for name, tally in tallies.items():
            print(f"  {name:<12} {tally.line()}")
        check = tallies["check"]
        if check.missed:
            print("  missed pitch classes (check):", dict(check.missed.most_common()))
        if verbose:
            for text in check.false:
                print("  false positive:", text)
        results[language] = tallies
    return results


def newer_items(batch: str) -> None:
    """The stricter figure: fitted (weights and thresholds) on the items written before ``batch`` only, judging
    the items of ``batch``, which were written later, so nothing about them shaped the model."""
    print(f"\nlater items: fitted on the items without batch {batch!r}, judging the {batch!r} items")
    for language in LANGUAGES:
        rows = read_corpus(language)
        old = [r for r in rows if r.get("batch") != batch]
        new = [r for r in rows if r.get("batch") == batch]
        if not new:
            continue
        model = fit(old, language)
        tallies = {"check": Tally(), "rules alone": Tally(), "model alone": Tally()}
        judge(new, language, model, tallies)
        print(
            f"  {language}: {len(old)} earlier items, {len(new)} later; thresholds {model.error_at}/{model.veto_below}"
        )
        for name, tally in tallies.items():
            print(f"    {name:<12} {tally.line()}")


def old_corpus() -> None:
    """Whole mails of the earlier corpus, judged by a model trained on all of the new corpus."""
    models = {lang: fit(read_corpus(lang), lang) for lang in LANGUAGES}
    print("\ncross-corpus: model trained on items-*.jsonl, judging tests/checks/corpus/{salesy,informational}/*.txt")
    for language in LANGUAGES:
        tally, rules_only = Tally(), Tally()
        footer = (CORPUS_DIR / f"footer-{language}.txt").read_text("utf-8")
        for kind in ("salesy", "informational"):
            for path in sorted((CORPUS_DIR / kind).glob(f"{language}-*.txt")):
                head, _, body = path.read_text("utf-8").partition("\n\n")
                subject = dict(line.split(": ", 1) for line in head.splitlines())["Subject"]
                text = subject + "\n\n" + body + footer
                row = {"id": path.name, "class": kind, "text": text}
                tally.add(kind == "salesy", flagged(text, language, models), row)
                rules_only.add(kind == "salesy", flagged(text, language, {}), row)
        print(f"  {language} check        {tally.line()}")
        print(f"  {language} rules alone  {rules_only.line()}")
        for text in tally.false:
            print("    false positive:", text)


def speed(rounds: int) -> None:
    rules = load_rules()
    models = content.load_model()
    cases: dict[str, tuple[str, str]] = {}
    for language in LANGUAGES:
        rows = read_corpus(language)
        for label in ("informational", "salesy"):
            text = "\n\n".join(r["text"] for r in rows if r["label"] == label)
            cases[f"{language} {label}"] = (language, text[:SIZE])
    full = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in cases["en salesy"][1])
    cases["en salesy, full-width"] = ("en", full)
    wrapped = "\n".join(
        cases["ja salesy"][1][i : i + 35] for i in range(0, len(cases["ja salesy"][1]), 35)
    )  # hard-wrapped every 35 characters
    cases["ja salesy, wrapped at 35"] = ("ja", wrapped[:SIZE])
    print(f"\nspeed: {SIZE:,}-character items, {rounds} rounds, median CPU ms per item (process time)")
    print(f"{'item':<26} {'baseline':>9} {'rules':>8} {'check':>8} {'errors':>7}")
    for name, (language, text) in cases.items():
        base, rules_ms, check_ms = [], [], []
        for _ in range(rounds):
            # CPU time of this process: the machine is shared (load ~10 on 2 CPUs), wall time is mostly waiting.
            t0 = time.process_time()
            lower_ascii(unicodedata.normalize("NFKC", text))
            t1 = time.process_time()
            content.check_text(text, language=language, rules=rules, model={})
            t2 = time.process_time()
            found = content.check_text(text, language=language, rules=rules, model=models)
            t3 = time.process_time()
            base.append((t1 - t0) * 1000)
            rules_ms.append((t2 - t1) * 1000)
            check_ms.append((t3 - t2) * 1000)
        print(
            f"{name:<26} {statistics.median(base):>9.3f} {statistics.median(rules_ms):>8.3f} "
            f"{statistics.median(check_ms):>8.3f} {len(content.errors(found)):>7}"
        )


def main() -> None:
    global LANGUAGES, read_corpus
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--verbose", action="store_true", help="list the false positives")
    parser.add_argument("--only", choices=("held-out", "later", "cross", "speed"), help="run one part")
    parser.add_argument("--batch", default="s5", help="the corpus batch judged by the 'later' part")
    parser.add_argument("--language", choices=("ja", "en"), help="one language only (held-out, later, cross)")
    parser.add_argument(
        "--without-batch", metavar="BATCH", help="leave the corpus items of BATCH out (the figure without them)"
    )
    parser.add_argument("--write-model", action="store_true", help="retrain nurture/checks/model.json and stop")
    args = parser.parse_args()
    if args.language:
        LANGUAGES = (args.language,)
    if args.without_batch:
        read_all = read_corpus
        read_corpus = lambda language: [r for r in read_all(language) if r.get("batch") != args.without_batch]  # noqa: E731
    if args.write_model:
        models = {lang: fit(read_corpus(lang), lang) for lang in LANGUAGES}
        save(models)
        print({lang: (len(m.weights), m.error_at, m.veto_below) for lang, m in models.items()}, "written")
        return
    if args.only in (None, "held-out"):
        held_out(args.folds, args.seed, args.verbose)
    if args.only in (None, "later"):
        newer_items(args.batch)
    if args.only in (None, "cross"):
        old_corpus()
    if args.only in (None, "speed"):
        speed(args.rounds)


if __name__ == "__main__":
    main()
