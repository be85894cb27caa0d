"""Header folding cost: nurture's ``build_mime`` against the standard library's generator (the bare baseline),
for an ordinary mail and for the long cases of issue 12 (a 1,200-character ASCII word in the subject, a 5,000-
character display name). Prints microseconds per message and the longest header line of each.

    python bench/headers.py [--n 2000]
"""

from __future__ import annotations

import argparse
import email.policy
import time
from email.message import EmailMessage
from email.utils import formataddr

from nurture.compose.message import OutgoingMessage, build_mime

HTML = "<p>" + "製造業の動向をお届けします。" * 40 + "</p>"
TEXT = "製造業の動向をお届けします。\n" * 40

CASES = {
    "ordinary (ja subject, ja name)": ("株式会社山田精機様：業界ニュース第3号", "山田 太郎"),
    "1,200-char ASCII word in subject": ("News for " + "D" * 1200 + " this month", "Taro Yamada"),
    "5,000-char display name": ("Monthly news", "N" * 5000),
    "1,300-char name with spaces": ("Monthly news", "Sample Works " * 100),
}


def _message(subject: str, name: str) -> OutgoingMessage:
    return OutgoingMessage(
        delivery_id=42,
        campaign="mfg-insights",
        item_key="mfg-03",
        to_address="yamada@example.co.jp",
        to_name=name,
        from_address="news@example.co.jp",
        from_name="サンプル製作所 ニュース",
        subject=subject,
        html=HTML,
        text=TEXT,
        list_unsubscribe={
            "List-Unsubscribe": "<https://t.example.co.jp/u/abc>, <mailto:unsubscribe@example.co.jp?subject=u>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


def _stdlib(msg: OutgoingMessage) -> bytes:
    """The bare baseline: the same headers and parts through email.message.EmailMessage (policy SMTP)."""
    m = EmailMessage(policy=email.policy.SMTP)
    m["From"] = formataddr((msg.from_name, msg.from_address))
    m["To"] = formataddr((msg.to_name, msg.to_address))
    m["Subject"] = msg.subject
    for name, value in msg.list_unsubscribe.items():
        m[name] = value
    m.set_content(msg.text)
    m.add_alternative(msg.html, subtype="html")
    return m.as_bytes()


def _longest(data: bytes) -> int:
    return max(len(line) for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    n = parser.parse_args().n
    print(f"{'case':36} {'nurture us/msg':>15} {'stdlib us/msg':>14} {'longest line (nurture/stdlib)':>30}")
    for label, (subject, name) in CASES.items():
        msg = _message(subject, name)
        results = []
        for build in (build_mime, _stdlib):
            build(msg)  # warm caches
            start = time.perf_counter()
            for _ in range(n):
                data = build(msg)
            results.append(((time.perf_counter() - start) / n * 1e6, _longest(data)))
        (ours, our_line), (base, base_line) = results
        print(f"{label:36} {ours:15.1f} {base:14.1f} {f'{our_line} / {base_line}':>30}")


if __name__ == "__main__":
    main()
