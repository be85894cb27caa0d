"""The leaks report counts ``silent_why`` in SQL (nurture.report.silent_why.kind_counts) and words only the rows
shown with the planner (nurture.plan.silence.silent_prospects): the counts must be the planner's, prospect for
prospect. Random populations and delivery histories against campaigns that use every rule the count mirrors
(fallback, monthly cap, temperature intervals, industry-limited items, a send window the schedule never reaches,
zones, languages, frequency factors, pending mail, failures), judged at several instants; on SQLite and
PostgreSQL."""

from __future__ import annotations

import random
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from nurture.core import config as configuration
from nurture.plan.campaigns import load_campaigns
from nurture.plan.silence import silent_prospects
from nurture.report import silent_why
from nurture.store import db
from nurture.store.models import Delivery, Prospect, ProspectTag

NOW = datetime(2027, 3, 2, 2, 7, 13, tzinfo=UTC)  # a Tuesday, 11:07 in Tokyo, 21:07 (Monday) in New York
#: The instants judged: Tuesday 11:07, Thursday 11:07 and Wednesday 16:07 in Tokyo (send time there, not in New
#: York), Saturday in Tokyo (no send time anywhere). Mails fall in the 110 days before the last one (some after
#: the first: not due yet; some in each instant's month: the monthly cap).
INSTANTS = (NOW, NOW + timedelta(days=16), NOW + timedelta(days=22, hours=5), NOW + timedelta(days=25))
TEMPLATE = (
    "<mjml><mj-body><mj-section><mj-column><mj-text>{{ item.key }}</mj-text></mj-column></mj-section></mj-body></mjml>"
)


def _campaign(name: str, language: str, segment: str, items: list[str], extra: str = "", cadence: str = "") -> str:
    body = textwrap.dedent(f"""\
        name = "{name}"
        language = "{language}"
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
    for item in items:
        key, _, industries = item.partition(":")
        only = f"\nindustries = [{', '.join(repr(i) for i in industries.split(','))}]" if industries else ""
        body += f'\n[[content.items]]\nkey = "{key}"\nsubject = "{key}"\ntemplate = "t.mjml"{only}\n'
    return body.replace("'", '"')


CAMPAIGNS = {
    "news": _campaign(
        "news",
        "ja",
        'industry = { in = ["製造業", "both"] }',
        ["n1", "n2", "n3:both"],
        extra='priority = 10\nfallback = "ever"',
        cadence="interval_by_temperature = { cold = 28, hot = 7 }\nmonthly_cap = 1",
    ),
    "ever": _campaign("ever", "ja", 'tags = { has = "evergreen" }', ["e1", "e2"]),
    "both": _campaign(
        "both",
        "ja",
        'industry = { in = ["both"] }',
        ["b1", "b2"],
        extra="priority = 5",
        cadence="interval_by_temperature = { cold = 7, warm = 7, hot = 7 }\nmonthly_cap = 1",
    ),
    "ops": _campaign(
        "ops",
        "en",
        'industry = { in = ["IT"] }',
        ["o1", "o2"],
        cadence='send_hours = [9, 16]\ntime_zone = "America/New_York"\nskip_japanese_holidays = false',
    ),
    # 物流 members get "no item for industry" (not exhausted).
    "short": _campaign("short", "ja", 'industry = { in = ["小売", "物流"] }', ["s1:小売"], extra='fallback = "gone"'),
    # Paused: "short" falls back to a campaign that is not running (its prospects stay exhausted).
    "gone": _campaign("gone", "ja", 'industry = { in = ["小売"] }', ["g1"], extra='status = "paused"'),
}
ITEMS = {"news": ["n1", "n2", "n3"], "ever": ["e1", "e2"], "both": ["b1", "b2"], "ops": ["o1", "o2"], "short": ["s1"]}

SELECTS = {"news": ["製造業", "both"], "both": ["both"], "ops": ["IT"], "short": ["小売", "物流"]}


@pytest.fixture
def setup(tmp_path, db_url):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.mjml").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "campaigns").mkdir()
    for name, text in CAMPAIGNS.items():
        (tmp_path / "campaigns" / f"{name}.toml").write_text(text, encoding="utf-8")
    # 01:00 and 10:00 in Tokyo: every zone's 9-18 is reached; 9-16 (ops) in London (16:00 and 01:00) never is.
    (tmp_path / "nurture.toml").write_text(
        f'[database]\nurl = "{db_url}"\n[schedule]\ncron = "0 1,10 * * *"\n[cadence]\nmin_gap_days = 5\n',
        encoding="utf-8",
    )
    cfg = configuration.load(tmp_path / "nurture.toml")
    engine = db.engine_for(db_url)
    db.upgrade(engine)
    return cfg, load_campaigns(cfg), engine


def _populate(engine, seed: int, n: int = 200) -> None:
    rnd = random.Random(seed)
    prospects, deliveries = [], []
    for i in range(1, n + 1):
        created = NOW - timedelta(days=rnd.uniform(1, 200), seconds=rnd.randrange(86400))
        prospects.append(
            dict(
                email=f"p{i}@example{i % 7}.jp",
                industry=rnd.choice(["製造業", "both", "IT", "小売", "物流", ""]),
                temperature=rnd.choice(["cold", "warm", "hot"]),
                time_zone=rnd.choice(["", "", "Asia/Tokyo", "America/New_York", "Europe/London"]),
                language=rnd.choice(["", "", "ja", "en"]),
                tags=rnd.random() < 0.5,
                frequency_factor=rnd.choice([1.0, 1.0, 0.5, 2.0, 0.0]),
                consent_basis="opt_in",
                created_at=created,
                updated_at=created,
            )
        )
        # Mostly the campaigns that select them (their rules then decide), sometimes another one.
        industry = prospects[-1]["industry"]
        mine = [c for c, industries in SELECTS.items() if industry in industries]
        for campaign in sorted(
            {*rnd.sample(mine, rnd.randrange(len(mine) + 1)), *rnd.sample(list(ITEMS), rnd.randrange(2))}
        ):
            # Every item half of the time: exhausted content (and the fallback after it) is common, not rare.
            count = len(ITEMS[campaign]) if rnd.random() < 0.5 else rnd.randrange(0, len(ITEMS[campaign]))
            for key in rnd.sample(ITEMS[campaign], count):
                at = INSTANTS[-1] - timedelta(days=rnd.uniform(0, rnd.choice([30, 110])))
                state = rnd.choice(["sent", "sent", "sent", "unknown", "failed", "skipped", "pending"])
                sent = at if state in ("sent", "unknown", "failed") else None
                deliveries.append(
                    dict(
                        campaign=campaign,
                        prospect_id=i,
                        item_key=key,
                        state=state,
                        subject="s",
                        sent_at=sent,
                        created_at=at,
                        updated_at=at,
                    )
                )
    # Two fixed cases of the fallback (random ones are rare): 製造業 prospects whose news items are all received,
    # one continued in ever (mailed there at send time), one a member of ever with all of its items too (so news
    # waits for ever, which has run out as well: overdue, not exhausted).
    at = NOW - timedelta(days=40)
    for i, tagged, got in (
        (n + 1, False, {"news": ["n1", "n2"]}),
        (n + 2, True, {"news": ["n1", "n2"], "ever": ["e1", "e2"]}),
    ):
        prospects.append(
            dict(
                email=f"p{i}@example{i % 7}.jp",
                industry="製造業",
                temperature="warm",
                tags=tagged,
                consent_basis="opt_in",
                created_at=NOW - timedelta(days=100),
                updated_at=NOW - timedelta(days=100),
            )
        )
        deliveries += [
            dict(
                campaign=c,
                prospect_id=i,
                item_key=k,
                state="sent",
                subject="s",
                sent_at=at,
                created_at=at,
                updated_at=at,
            )
            for c, keys in got.items()
            for k in keys
        ]
    with engine.begin() as conn:
        for p in prospects:
            conn.execute(
                Prospect.__table__.insert(),
                {k: v for k, v in p.items() if k in ("email", "created_at", "updated_at", "consent_basis")},
            )
            conn.execute(
                update(Prospect)
                .where(Prospect.email == p["email"])
                .values(**{k: v for k, v in p.items() if k not in ("email", "tags")})
            )
        ids = dict(conn.execute(select(Prospect.email, Prospect.id)).all())
        tagged = [{"prospect_id": ids[p["email"]], "tag": "evergreen"} for p in prospects if p["tags"]]
        conn.execute(ProspectTag.__table__.insert(), tagged)
        for d in deliveries:
            d["prospect_id"] = ids[f"p{d['prospect_id']}@example{d['prospect_id'] % 7}.jp"]
        conn.execute(Delivery.__table__.insert(), deliveries)


def test_sql_counts_are_the_planners(setup):
    cfg, campaigns, engine = setup
    _populate(engine, seed=1)
    for now in INSTANTS:
        with engine.connect() as conn:
            found = list(silent_prospects(conn, campaigns, cfg, now, kinds=silent_why.KINDS))
            assert silent_why.kind_counts(conn, campaigns, cfg, now) == Counter(s.kind for s in found), now
            # Not only as many: the same prospects, each of the same kind (first_rows asks the planner about them).
            assert silent_why.classify(conn, campaigns, cfg, now) == [(s.prospect_id, s.kind) for s in found], now
            only = [Prospect.industry.in_(["IT", "both"])]
            kept = set(conn.execute(select(Prospect.id).where(*only)).scalars())
            expected = Counter(s.kind for s in found if s.prospect_id in kept)
            assert silent_why.kind_counts(conn, campaigns, cfg, now, only) == expected, now
            shown = silent_why.first_rows(conn, campaigns, cfg, now, 5, only)
            assert shown == [s for s in found if s.prospect_id in kept][:5]
    # Every kind is exercised somewhere, or the comparison proves little.
    with engine.connect() as conn:
        seen = set()
        for now in INSTANTS:
            seen |= set(silent_why.kind_counts(conn, campaigns, cfg, now))
    assert seen == set(silent_why.KINDS), seen
