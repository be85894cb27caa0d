"""A workspace for `nurture send` tests: a config pointing at the test database and an SMTP server, two
campaigns (alpha: 製造業, priority 10; beta: 物流, priority 5) sharing one template, prospects, and what was
delivered. The ``ws`` fixture (conftest.py) makes one.

Times: 2026-11-24 is a Tuesday; 2026-11-23 is 勤労感謝の日 (a Monday holiday). 10:00 JST = 01:00 UTC.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from sqlalchemy import select

from nurture import deliver
from nurture.cli.main import main
from nurture.core import config as configuration
from nurture.deliver import Report
from nurture.people.prospects import import_file
from nurture.plan.campaigns import load_campaigns
from nurture.store import db
from nurture.store.models import Delivery, Prospect

TUESDAY_10_JST = "2026-11-24T01:00:00+00:00"

TEMPLATE = """<mjml><mj-body><mj-section><mj-column>
<mj-text><h1>{{ item.vars.title }}</h1><p>{{ prospect.name }}様、業界の動向をお届けします。</p>
<p><a href="https://example.org/report">レポート</a></p></mj-text>
<mj-text>{{ sender.organization }} {{ sender.postal_address }} お問い合わせ: {{ sender.inquiry }}
<a href="{{ urls.unsubscribe }}" data-nurture="no-track">配信停止はこちら</a></mj-text>
</mj-column></mj-section></mj-body></mjml>
"""


def campaign_toml(name: str, priority: int, industry: str, items: int = 3, extra: str = "") -> str:
    body = textwrap.dedent(f"""\
        name = "{name}"
        description = "test campaign {name}"
        language = "ja"
        status = "active"
        priority = {priority}

        [segment]
        industry = {{ in = ["{industry}", "both"] }}

        [cadence]
        interval_days = 14
        send_days = ["mon", "tue", "wed", "thu", "fri"]
        send_hours = [9, 18]
        time_zone = "Asia/Tokyo"
        skip_japanese_holidays = true
        {extra}

        [content]
        mode = "sequence"
        """)
    for i in range(1, items + 1):
        body += textwrap.dedent(f"""
            [[content.items]]
            key = "{name}-{i}"
            subject = "{{{{ prospect.company }}}}様：業界ニュース第{i}号"
            template = "t/news.mjml"
            vars = {{ title = "第{i}号" }}
            """)
    return body


def write_config(folder: Path, db_url: str, smtp_port: int, extra: str = "", record_batch: int = 8) -> None:
    (folder / "nurture.toml").write_text(
        textwrap.dedent(f"""\
        [database]
        url = "{db_url}"
        [identity]
        organization = "株式会社テスト"
        from_name = "テスト ニュース"
        from_address = "news@example.co.jp"
        postal_address = "東京都千代田区1-1"
        inquiry = "info@example.co.jp"
        unsubscribe_mailto = "unsubscribe@example.co.jp"
        [delivery]
        sender = "smtp"
        preflight = false
        retry_base_seconds = 60
        error_budget = 5
        lease_seconds = 30
        record_batch = {record_batch}
        [smtp]
        host = "127.0.0.1"
        port = {smtp_port}
        [throttle]
        per_second = 500
        default_domain_per_second = 500
        concurrency = 2
        [tracking]
        base_url = "https://t.example.co.jp"
        secret = "test-secret-0123456789abcdef"
        """)
        + extra,
        encoding="utf-8",
    )


def add_prospects(folder: Path, rows: list[str]) -> None:
    csv = folder / "p.csv"
    csv.write_text("email,name,company,industry,temperature,consent\n" + "\n".join(rows) + "\n", encoding="utf-8")
    cfg = configuration.load(folder / "nurture.toml")
    summary = import_file(db.engine_for(cfg.database_url), csv)
    assert not summary.rejected, summary.rejected


def deliveries(folder: Path) -> list:
    cfg = configuration.load(folder / "nurture.toml")
    with db.engine_for(cfg.database_url).connect() as conn:
        return conn.execute(
            select(
                Delivery.campaign, Delivery.item_key, Delivery.state, Delivery.error, Delivery.language, Prospect.email
            )
            .join(Prospect, Prospect.id == Delivery.prospect_id)
            .order_by(Delivery.id)
        ).all()


def send(runner, *args):
    """``nurture send --json ARGS``: the click result and the parsed report (None when it printed none)."""
    result = runner.invoke(main, ["send", "--json", *args], catch_exceptions=False)
    return result, json.loads(result.output) if result.output.startswith("{") else None


def send_api(folder: Path, **kw) -> Report:
    """:func:`nurture.deliver.send` from Python, as a script would call it, on every campaign of the folder."""
    cfg = configuration.load(folder / "nurture.toml")
    return deliver.send(db.engine_for(cfg.database_url), cfg, load_campaigns(cfg), **kw)


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` (which must be there) with ``new`` in a workspace file."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def at(monkeypatch, iso: str) -> None:
    monkeypatch.setenv("NURTURE_NOW", iso)
