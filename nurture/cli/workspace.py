"""The demo workspace: a folder a new user can look into, with everything the main job needs.

``nurture demo`` writes ``nurture.toml`` (SQLite, outbox sender, a random tracking secret), copies the sample
campaigns and templates, imports the sample prospects (Japanese and English) and runs ``nurture send`` through
the outbox sender, so the mails it wrote can be opened in any mail program.

The sample campaigns keep their real calendars (Tue-Thu office hours). The demo copies open them to every day
and hour, so that the demo sends whenever it is run; a comment in each copied file says so.
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path

SAMPLES_INSTALLED = Path(__file__).resolve().parent.parent / "_samples"
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEMO_PROSPECTS = Path(__file__).parent / "demo_data" / "prospects.csv"

CONFIG = """\
# nurture demo workspace — made by `nurture demo`. Every setting is explained in config.example.toml.
[database]
url = "sqlite:///nurture.db"

[identity]
organization = "株式会社サンプル製作所 (Sample Works Co., Ltd.)"
from_name = "サンプル製作所 ニュースレター"
from_address = "news@example.co.jp"
postal_address = "〒100-0005 東京都千代田区丸の内1-1-1 / 1-1-1 Marunouchi, Chiyoda-ku, Tokyo 100-0005, Japan"
inquiry = "info@example.co.jp / 03-0000-0000"
website = "https://www.example.co.jp"
unsubscribe_mailto = "unsubscribe@example.co.jp"

[delivery]
sender = "outbox"                  # writes .eml files into outbox/ instead of sending

[outbox]
path = "outbox"

[tracking]
base_url = "http://127.0.0.1:8080" # `nurture serve` answers here; a real setup uses its public https URL
secret = "{secret}"                # demo only: real setups set NURTURE_SECRET in the environment

[paths]
campaigns = "campaigns"
templates = "templates"
"""

_OPEN_CALENDAR = {
    "send_days": 'send_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]  # demo: every day',
    "send_hours": "send_hours = [0, 24]  # demo: any hour",
    "skip_japanese_holidays": "skip_japanese_holidays = false  # demo",
    "company_holidays": "company_holidays = []  # demo",
}


def samples_dir() -> Path:
    """Where the sample campaigns and templates are: inside the installed package, else the checkout."""
    if (SAMPLES_INSTALLED / "campaigns").is_dir():
        return SAMPLES_INSTALLED
    return REPO_ROOT


def open_calendar(text: str) -> str:
    """A campaign file with its send days and hours opened (for the demo only)."""
    for key, line in _OPEN_CALENDAR.items():
        text = re.sub(rf"(?m)^{key}\s*=.*$", line, text)
    return text


def create_workspace(folder: Path) -> list[str]:
    """Write the demo files into ``folder`` (kept if they exist). Returns what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    config = folder / "nurture.toml"
    if not config.exists():
        config.write_text(CONFIG.format(secret=secrets.token_urlsafe(32)), encoding="utf-8")
        written.append("nurture.toml")
    source = samples_dir()
    templates = folder / "templates"
    if not templates.exists():
        shutil.copytree(source / "templates", templates)
        written.append("templates/")
    campaigns = folder / "campaigns"
    if not campaigns.exists():
        campaigns.mkdir()
        for path in sorted((source / "campaigns").glob("*.toml")):
            (campaigns / path.name).write_text(open_calendar(path.read_text(encoding="utf-8")), encoding="utf-8")
        for path in (source / "campaigns").glob("*.md"):
            shutil.copy(path, campaigns / path.name)
        written.append("campaigns/")
    prospects = folder / "prospects.csv"
    if not prospects.exists():
        shutil.copy(DEMO_PROSPECTS, prospects)
        written.append("prospects.csv")
    return written


def copy_samples(
    config_file: Path | None = None, campaigns_dir: Path | None = None, templates_dir: Path | None = None
) -> list[str]:
    """``nurture init --samples``: the sample campaigns (their real calendars, unlike the demo's) and
    templates into the workspace's folders, and ``config.example.toml`` as ``config_file`` when that does
    not exist yet (each only when given). Nothing that exists is overwritten. Returns what was written."""
    source = samples_dir()
    written = []
    if config_file is not None and not config_file.exists():
        shutil.copy(source / "config.example.toml", config_file)
        written.append(config_file.name)
    if campaigns_dir is not None:
        for path in sorted((source / "campaigns").iterdir()):
            target = campaigns_dir / path.name
            if path.suffix in (".toml", ".md") and not target.exists():
                campaigns_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target)
                written.append(f"{campaigns_dir.name}/{path.name}")
    if templates_dir is not None:
        for path in sorted((source / "templates").rglob("*")):
            relative = path.relative_to(source / "templates")
            target = templates_dir / relative
            if path.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target)
                written.append(f"{templates_dir.name}/{relative}")
    return written
