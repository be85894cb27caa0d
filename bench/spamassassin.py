"""SpamAssassin scores of the shipped sample newsletters (issue 3: each must score below 1.0).

Usage: python bench/spamassassin.py [--threshold 1.0]

Renders every content item of campaigns/mfg-insights.toml and campaigns/saas-ops-digest.toml for a sample
prospect, with signed unsubscribe/preferences/view URLs, click-tracked links, the open pixel and the
List-Unsubscribe headers, builds the full MIME message with ``nurture.compose.message.build_mime`` and runs
``spamassassin -t -L`` (local tests only: the network is not consulted). Prints the score and the rules that
fired for each; exits 1 if any message reaches the threshold, 2 if spamassassin is not installed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nurture import compose
from nurture.compose import links as tracking
from nurture.compose.message import OutgoingMessage, build_mime
from nurture.core.config import Config, IdentityConfig, TrackingConfig
from nurture.plan import campaigns

SAMPLES = {
    "mfg-insights": (
        IdentityConfig(
            organization="株式会社サンプル製作所",
            from_name="製造業インサイト編集部",
            from_address="news@example.co.jp",
            reply_to="info@example.co.jp",
            postal_address="〒100-0005 東京都千代田区丸の内1-2-3 サンプルビル5階",
            inquiry="info@example.co.jp / 03-1234-5678",
            website="https://www.example.co.jp",
        ),
        {"name": "山田 太郎", "company": "山田精機株式会社", "email": "yamada@example.jp", "owner": "佐藤"},
    ),
    "saas-ops-digest": (
        IdentityConfig(
            organization="Northwind Systems Inc.",
            from_name="The Ops Digest",
            from_address="digest@example.com",
            reply_to="hello@example.com",
            postal_address="100 Example Street, Suite 400, Boston, MA 02110, USA",
            inquiry="hello@example.com",
            website="https://www.example.com",
        ),
        {"name": "Jane Doe", "company": "Acme Corp", "email": "jane.doe@example.org", "owner": "Sam Lee"},
    ),
}


def sample_messages() -> list[tuple[str, bytes]]:
    """(label, MIME bytes) for every item of the sample campaigns."""
    out = []
    for number, (name, (identity, prospect)) in enumerate(SAMPLES.items(), 1):
        config = Config(
            identity=identity,
            root=REPO,
            tracking=TrackingConfig(base_url="https://news.example.com", secret="bench-secret-0123456789abcdef"),
        )
        campaign = campaigns.load_campaign(config.campaigns_dir / f"{name}.toml", config)
        renderer = compose.Renderer(config.templates_dir)
        for index, item in enumerate(campaign.content.items, 1):
            delivery_id = number * 1000 + index
            urls = tracking.urls_for(config, delivery_id, 42)
            context = compose.build_context(config, campaign, item, prospect, urls)
            rendered = renderer.render(
                item, context, rewrite_link=lambda url, i, d=delivery_id, c=config: tracking.click_url(c, d, i, url)
            )
            html = compose.add_tracking_markup(rendered.html, open_pixel=urls["open_pixel"])
            msg = OutgoingMessage(
                delivery_id=delivery_id,
                campaign=campaign.name,
                to_address=prospect["email"],
                to_name=prospect["name"],
                from_address=identity.from_address,
                from_name=campaign.from_name or identity.from_name,
                reply_to=identity.reply_to,
                subject=rendered.subject,
                html=html,
                text=rendered.text,
                list_unsubscribe=tracking.list_unsubscribe_headers(config, delivery_id, 42),
            )
            out.append((f"{name}/{item.key}", build_mime(msg)))
    return out


def score(message: bytes) -> tuple[float, str]:
    """SpamAssassin's score and the rules that fired (``-t`` test mode, ``-L`` local tests only)."""
    report = subprocess.run(["spamassassin", "-t", "-L"], input=message, capture_output=True, timeout=120).stdout
    text = report.decode("utf-8", "replace")
    m = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)[^\n]*(?:\n\s+[^\n]*)*", text, re.M)
    if m is None:
        raise RuntimeError("no X-Spam-Status header in spamassassin's output")
    tests = re.search(r"tests=(.*?)\s+autolearn", m.group(0).replace("\n", " "), re.S)
    return float(m.group(1)), re.sub(r"\s+", "", tests.group(1)) if tests else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=1.0)
    args = parser.parse_args()
    if shutil.which("spamassassin") is None:
        print("spamassassin is not installed (Debian: apt-get install spamassassin); nothing measured")
        return 2
    messages = sample_messages()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda pair: score(pair[1]), messages))
    worst = max(s for s, _ in results)
    for (label, _), (value, tests) in zip(messages, results, strict=True):
        print(f"{value:5.1f}  {label:40} {tests}")
    print(f"{len(results)} messages; highest score {worst:.1f} (threshold {args.threshold})")
    return 0 if worst < args.threshold else 1


if __name__ == "__main__":
    raise SystemExit(main())
