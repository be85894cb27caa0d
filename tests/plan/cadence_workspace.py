"""A workspace for the cadence tests (tests/plan/test_year.py, test_explain.py): five campaigns, a small population
in two zones and two languages, the memory sender, and a driver that runs `nurture send` at the instants the
declared ``[schedule] cron`` fires.

Campaigns: ``news-ja`` (製造業 + "both", priority 10, 30-item pool), ``mfg-b`` ("both", priority 5, 30-item
pool: shares "both" prospects with news-ja), ``ops-en`` (English, IT, send hours 9-16 in New York, 30-item pool),
``tips-ja`` (物流, four items, then ``fallback = "evergreen-ja"``), ``evergreen-ja`` (selects nobody by itself: only
continues tips-ja), ``short-ja`` (小売, three items, no fallback: its prospects go silent, and must be reported).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from unittest import mock
from zoneinfo import ZoneInfo

from cronsim import CronSim
from sqlalchemy import func, select

from nurture import deliver
from nurture.core import clock
from nurture.core import config as configuration
from nurture.deliver import run as run_module
from nurture.deliver.senders import memory
from nurture.people.prospects import import_file
from nurture.plan import due
from nurture.plan.campaigns import load_campaigns
from nurture.store import db
from nurture.store.models import Delivery, Prospect
from nurture.store.states import DeliveryState, PlanOutcome

TEMPLATE = """<mjml><mj-body><mj-section><mj-column>
<mj-text><p>{{ prospect.name }} 様、業界の動向をお届けします。{{ item.key }}</p></mj-text>
<mj-text>{{ sender.organization }} {{ sender.postal_address }} お問い合わせ: {{ sender.inquiry }}
<a href="{{ urls.unsubscribe }}" data-nurture="no-track">配信停止はこちら</a></mj-text>
</mj-column></mj-section></mj-body></mjml>
"""
TEMPLATE_EN = """<mjml><mj-body><mj-section><mj-column>
<mj-text><p>Hello {{ prospect.name }}, notes for operations teams. {{ item.key }}</p></mj-text>
<mj-text>{{ sender.organization }} {{ sender.postal_address }} Contact: {{ sender.inquiry }}
<a href="{{ urls.unsubscribe }}" data-nurture="no-track">Unsubscribe</a></mj-text>
</mj-column></mj-section></mj-body></mjml>
"""


def campaign(
    name: str, language: str, priority: int, segment: str, items: int, extra: str = "", cadence: str = ""
) -> str:
    template = "t/en.mjml" if language == "en" else "t/ja.mjml"
    body = textwrap.dedent(f"""\
        name = "{name}"
        language = "{language}"
        priority = {priority}
        {extra}
        [segment]
        {segment}

        [cadence]
        interval_days = 14
        {cadence}

        [content]
        mode = "pool"
        when_exhausted = "wait"
        """)
    for i in range(1, items + 1):
        body += f'\n[[content.items]]\nkey = "{name}-{i}"\nsubject = "{name} {i}"\ntemplate = "{template}"\n'
    return body


CAMPAIGNS = {
    "news-ja": campaign("news-ja", "ja", 10, 'industry = { in = ["製造業", "both"] }', 30),
    "mfg-b": campaign("mfg-b", "ja", 5, 'industry = { in = ["both"] }', 30),
    "ops-en": campaign(
        "ops-en",
        "en",
        7,
        'industry = { in = ["IT"] }',
        30,
        cadence='send_hours = [9, 16]\ntime_zone = "America/New_York"\nskip_japanese_holidays = false\n'
        "company_holidays = []",
    ),
    "tips-ja": campaign("tips-ja", "ja", 3, 'industry = { in = ["物流"] }', 4, extra='fallback = "evergreen-ja"'),
    "evergreen-ja": campaign("evergreen-ja", "ja", 0, 'tags = { has = "evergreen" }', 30),
    "short-ja": campaign("short-ja", "ja", 2, 'industry = { in = ["小売"] }', 3),
}

#: When the prospects are imported (the Monday before the first run of the tests).
IMPORTED = datetime(2027, 1, 4, 0, 0, tzinfo=ZoneInfo("UTC"))

#: email, name, industry, temperature, time zone, language
PROSPECTS = [
    *[(f"mfg{i}@seizo{i}.co.jp", f"製造 {i}", "製造業", "warm", "", "") for i in range(4)],
    *[(f"both{i}@ryoho{i}.co.jp", f"両方 {i}", "both", "warm", "", "ja") for i in range(4)],
    *[(f"ops{i}@ops{i}.com", f"Ops {i}", "IT", "warm", "America/New_York", "en") for i in range(3)],
    *[(f"logi{i}@butsuryu{i}.co.jp", f"物流 {i}", "物流", "warm", "", "") for i in range(2)],
    *[(f"shop{i}@kouri{i}.co.jp", f"小売 {i}", "小売", "warm", "", "") for i in range(2)],
]


def make(folder: Path, db_url: str, extra_config: str = "", campaigns: dict[str, str] | None = None) -> None:
    (folder / "templates" / "t").mkdir(parents=True)
    (folder / "templates" / "t" / "ja.mjml").write_text(TEMPLATE, encoding="utf-8")
    (folder / "templates" / "t" / "en.mjml").write_text(TEMPLATE_EN, encoding="utf-8")
    (folder / "campaigns").mkdir()
    for name, text in (campaigns or CAMPAIGNS).items():
        (folder / "campaigns" / f"{name}.toml").write_text(text, encoding="utf-8")
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
        sender = "memory"
        [throttle]
        per_second = 1000
        default_domain_per_second = 1000
        [tracking]
        base_url = "https://t.example.co.jp"
        secret = "test-secret-0123456789abcdef"
        """)
        + extra_config,
        encoding="utf-8",
    )
    cfg = configuration.load(folder / "nurture.toml")
    engine = db.engine_for(cfg.database_url)
    db.upgrade(engine)
    csv = folder / "p.csv"
    rows = [f"{e},{n},,{i},{t},opt_in,{z},{lang}" for e, n, i, t, z, lang in PROSPECTS]
    csv.write_text("email,name,company,industry,temperature,consent,time_zone,language\n" + "\n".join(rows) + "\n")
    with clock.frozen(IMPORTED):
        summary = import_file(engine, csv)
    assert not summary.rejected, summary.rejected


def simulate(folder: Path, start: datetime, end: datetime, on_run: Callable[[datetime], None] | None = None) -> int:
    """Run `nurture send` (the library call, memory sender) at the instants ``[schedule] cron`` fires between
    ``start`` and ``end``; returns how many runs were made.

    Runs in which nothing can change are skipped, which is what keeps a year in seconds: every decision carries
    the instant before which it cannot change (``not_before``: due date, gap, send window, next month for a
    monthly cap); a prospect just mailed cannot get another mail within ``min_gap_days``; a prospect the run did
    not look at cannot be due before their stored ``next_plan_at`` (nurture.plan.due). The next run is the
    first fire at or after the earliest of those, so every run a real schedule would make and in which anything
    could happen is made."""
    cfg = configuration.load(folder / "nurture.toml")
    engine = db.engine_for(cfg.database_url)
    campaigns = load_campaigns(cfg)
    zone = ZoneInfo(cfg.schedule_time_zone)
    gap = timedelta(days=cfg.cadence.min_gap_days)
    runs = 0
    t = start
    # The compliance gate renders every item of every campaign on each run (tested in tests/deliver); the files do
    # not change during the simulated year, so its verdict is taken once and reused (80% of the time otherwise).
    verdict = run_module.compliance_gate(cfg, campaigns)
    while t < end:
        with clock.frozen(t), mock.patch.object(run_module, "compliance_gate", lambda *_: dict(verdict)):
            report = deliver.send(engine, cfg, campaigns, keep_decisions=True)
        runs += 1
        assert not report.failed and not report.blocked, (report.failed, report.blocked)
        if on_run:
            on_run(t)
        wake = [d.not_before for d in report.decisions if d.not_before is not None and d.not_before > t]
        wake += [t + gap for d in report.decisions if d.outcome == PlanOutcome.SEND]
        if any(d.outcome == PlanOutcome.DEFERRED and d.not_before is None for d in report.decisions):
            wake.append(t + timedelta(minutes=1))
        # Prospects the run did not look at (nothing can be due for them yet) wake at their stored bound.
        with engine.connect() as conn:
            stored = conn.scalar(select(func.min(Prospect.next_plan_at)).where(Prospect.next_plan_at > t))
        if stored is not None and stored < due.NEVER:
            wake.append(stored)
        if not wake:
            break
        after = max(min(wake), t + timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None)
        fire = next(iter(CronSim(cfg.schedule.cron, after - timedelta(minutes=1))))
        t = fire.replace(tzinfo=zone).astimezone(start.tzinfo)
    return runs


def sent(folder: Path) -> list:
    """Every delivery sent: (email, campaign, item, sent_at, time_zone)."""
    cfg = configuration.load(folder / "nurture.toml")
    with db.engine_for(cfg.database_url).connect() as conn:
        return conn.execute(
            select(Prospect.email, Delivery.campaign, Delivery.item_key, Delivery.sent_at, Prospect.time_zone)
            .join(Prospect, Prospect.id == Delivery.prospect_id)
            .where(Delivery.state == DeliveryState.SENT)
            .order_by(Delivery.sent_at, Delivery.id)
        ).all()


__all__ = ["CAMPAIGNS", "IMPORTED", "PROSPECTS", "campaign", "make", "memory", "sent", "simulate"]
