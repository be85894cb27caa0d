"""Screenshots of the sample newsletters in headless Chromium, desktop and phone widths.

Usage: python bench/screenshots.py [--out bench/screenshots] [--item 1]

Renders content item N of each sample campaign (as bench/spamassassin.py does) and writes
``<campaign>-desktop.png`` (1000 px wide) and ``<campaign>-mobile.png`` (390 px wide). Needs Debian's
``chromium``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from spamassassin import REPO, SAMPLES

from nurture import compose
from nurture.core.config import Config, TrackingConfig
from nurture.plan import campaigns

URLS = {
    "unsubscribe": "https://news.example.com/u/x",
    "preferences": "https://news.example.com/p/x",
    "view_in_browser": "https://news.example.com/v/x",
}
SIZES = {"desktop": (1000, 1900), "mobile": (390, 2600)}


def chromium(html: Path, png: Path, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-quic",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={width},{height}",
                html.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "screenshots")
    parser.add_argument("--item", type=int, default=1)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (identity, prospect) in SAMPLES.items():
            config = Config(identity=identity, root=REPO, tracking=TrackingConfig(secret="x" * 32))
            campaign = campaigns.load_campaign(config.campaigns_dir / f"{name}.toml", config)
            item = campaign.content.items[args.item - 1]
            out = compose.Renderer(config.templates_dir).render(
                item, compose.build_context(config, campaign, item, prospect, URLS)
            )
            page = Path(tmp) / f"{name}.html"
            page.write_text(out.html, encoding="utf-8")
            for kind, (width, height) in SIZES.items():
                png = args.out / f"{name}-{kind}.png"
                chromium(page, png, width, height)
                print(f"{png} ({png.stat().st_size // 1024} kB): {out.subject}")


if __name__ == "__main__":
    main()
