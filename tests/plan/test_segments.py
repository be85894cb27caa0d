"""Segments: whitelist validation, and the one SQL select on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, insert, select

from nurture.core.tomlschema import Problems, TomlFile
from nurture.plan.segments import Segment, mailable_reason, parse_segment, segment_select
from nurture.store import db
from nurture.store.models import Prospect, ProspectTag, Suppression, email_hash
from nurture.store.suppression import suppression_reason

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def row(email: str, **changes) -> dict:
    """Every NOT NULL column of prospects (the models have no server defaults), and every column any row sets:
    a Core executemany takes its column list from the first row."""
    values = dict(
        email=email,
        name="",
        company="",
        title="",
        industry="製造業",
        temperature="warm",
        stage="MQL",
        rank="C",
        score=10.0,
        owner="",
        last_contact_at=None,
        next_action="",
        next_action_due=None,
        time_zone="",
        language="ja",
        attributes={},
        consent_basis="business_card",
        consent_source="",
        status="active",
        status_reason="",
        frequency_factor=1.0,
        created_at=NOW,
        updated_at=NOW,
        paused_until=None,
        strength_existing_business=0,
        strength_empathy=0,
        strength_contribution=0,
        strength_multiple_contacts=0,
        strength_decision_maker=0,
        strength_invested=0,
    )
    values.update(changes)
    return values


def segment(text: str, tmp_path) -> Segment:
    path = tmp_path / "seg.toml"
    path.write_text("[segment]\n" + text, encoding="utf-8")
    source = TomlFile(path, "seg.toml")
    problems = Problems(source)
    result = parse_segment(source.data.get("segment", {}), problems)
    problems.raise_if_any()
    return result


def problems_of(text: str, tmp_path) -> list[str]:
    path = tmp_path / "seg.toml"
    path.write_text("[segment]\n" + text, encoding="utf-8")
    source = TomlFile(path, "seg.toml")
    problems = Problems(source)
    parse_segment(source.data.get("segment", {}), problems)
    return problems.items


def members(engine, seg: Segment, now: datetime = NOW) -> set[str]:
    with engine.connect() as conn:
        ids = select(Prospect.email).where(Prospect.id.in_(segment_select(seg, now)))
        return set(conn.scalars(ids))


@pytest.fixture
def people(engine):
    """A small population covering every field and every reason not to be mailed."""
    rows = [
        row("warm@a.jp"),
        row(
            "cold@a.jp",
            temperature="cold",
            rank="B",
            score=50.0,
            owner="山田",
            company="A社",
            title="部長",
            last_contact_at=NOW - timedelta(days=90),
        ),
        row(
            "hot@a.jp",
            temperature="hot",
            rank="A",
            score=85.0,
            industry="小売業",
            last_contact_at=NOW - timedelta(days=3),
        ),
        row("lost@a.jp", stage="lost", temperature="cold"),
        row("customer@a.jp", stage="customer"),
        row("next-action@a.jp", next_action="見積り提出"),
        row("next-due@a.jp", next_action_due=date(2026, 12, 1)),
        row("unsub@a.jp", status="unsubscribed"),
        row("bounced@a.jp", status="bounced"),
        row("noconsent@a.jp", consent_basis="unknown"),
        row("suppressed@a.jp"),
        row("paused@a.jp", paused_until=NOW + timedelta(days=10)),
        row("unpaused@a.jp", paused_until=NOW - timedelta(days=1)),
        row("tagged@a.jp", industry="manufacturing"),
    ]
    with engine.begin() as conn:
        conn.execute(insert(Prospect), rows)
        ids = dict(conn.execute(Prospect.__table__.select().with_only_columns(Prospect.email, Prospect.id)).all())
        conn.execute(
            insert(ProspectTag),
            [
                {"prospect_id": ids["tagged@a.jp"], "tag": "seminar-2026"},
                {"prospect_id": ids["tagged@a.jp"], "tag": "download"},
                {"prospect_id": ids["cold@a.jp"], "tag": "download"},
            ],
        )
        conn.execute(
            insert(Suppression),
            [
                {
                    "email_hash": email_hash("suppressed@a.jp"),
                    "reason": "unsubscribed",
                    "source": "test",
                    "created_at": NOW,
                }
            ],
        )
    return ids


MAILABLE = {"warm@a.jp", "cold@a.jp", "hot@a.jp", "lost@a.jp", "unpaused@a.jp", "tagged@a.jp"}


def test_empty_segment_is_every_mailable_non_customer_without_next_action(engine, people):
    assert members(engine, Segment()) == MAILABLE


def test_defaults_can_be_switched_off(engine, people):
    got = members(engine, Segment(include_customers=True, include_pending_next_action=True))
    assert got == MAILABLE | {"customer@a.jp", "next-action@a.jp", "next-due@a.jp"}


def test_pause_ends_when_paused_until_passes(engine, people):
    assert "paused@a.jp" in members(engine, Segment(), NOW + timedelta(days=11))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'temperature = { in = ["warm", "cold"] }',
            {"warm@a.jp", "cold@a.jp", "lost@a.jp", "unpaused@a.jp", "tagged@a.jp"},
        ),
        ('temperature = { eq = "hot" }', {"hot@a.jp"}),
        ('temperature = { not_in = ["warm"] }', {"cold@a.jp", "hot@a.jp", "lost@a.jp"}),
        ('industry = { in = ["小売業", "manufacturing"] }', {"hot@a.jp", "tagged@a.jp"}),
        ('rank = { in = ["A", "B"] }', {"hot@a.jp", "cold@a.jp"}),
        ('stage = { not_in = ["lost"] }', MAILABLE - {"lost@a.jp"}),
        ('owner = { eq = "山田" }', {"cold@a.jp"}),
        ("score = { gte = 50, lte = 79 }", {"cold@a.jp"}),
        ("score = { gte = 80 }", {"hot@a.jp"}),
        ("last_contact = { older_than = 30 }", MAILABLE - {"hot@a.jp"}),  # never contacted counts as older
        ("last_contact = { newer_than = 30 }", {"hot@a.jp"}),
        ("last_contact = { older_than = 30, newer_than = 365 }", {"cold@a.jp"}),
        ('tags = { has = "seminar-2026" }', {"tagged@a.jp"}),
        ('tags = { has_any = ["download", "nothing"] }', {"tagged@a.jp", "cold@a.jp"}),
        ('tags = { has_none = ["download"] }', MAILABLE - {"tagged@a.jp", "cold@a.jp"}),
        ('tags = { has_all = ["download", "seminar-2026"] }', {"tagged@a.jp"}),
        ('company = { eq = "A社" }\ntitle = { in = ["部長"] }', {"cold@a.jp"}),
        ('temperature = { in = ["cold"] }\nstage = { in = ["lost"] }', {"lost@a.jp"}),
    ],
)
def test_conditions(engine, people, tmp_path, text, expected):
    assert members(engine, segment(text, tmp_path)) == expected


def test_stage_customer_with_include_customers(engine, people, tmp_path):
    seg = segment('stage = { eq = "customer" }\ninclude_customers = true', tmp_path)
    assert members(engine, seg) == {"customer@a.jp"}


def test_segment_is_one_statement(engine, people, tmp_path):
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    seg = segment(
        'temperature = { in = ["warm", "cold"] }\ntags = { has_none = ["x"] }\nlast_contact = { older_than = 30 }',
        tmp_path,
    )
    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.connect() as conn:
            ids = list(conn.scalars(segment_select(seg, NOW)))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(ids) == 5
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


def test_mailable_reason_per_prospect():
    def p(**kw):
        return Prospect(**row("x@a.jp", **kw))

    assert mailable_reason(p(), NOW) is None
    assert mailable_reason(p(status="unsubscribed", status_reason="one-click"), NOW) == "unsubscribed (one-click)"
    # the reason as track.record writes it: said once, with its source (not "unsubscribed (unsubscribed (web:...))")
    web = p(status="unsubscribed", status_reason="unsubscribed (web:unsubscribed)")
    assert mailable_reason(web, NOW) == "unsubscribed (web)"
    assert mailable_reason(p(status="bounced", status_reason="bounced (smtp:bounced)"), NOW) == "bounced (smtp)"
    assert mailable_reason(p(consent_basis="unknown"), NOW) == "no consent on record (consent_basis unknown)"
    assert mailable_reason(p(), NOW, suppression="bounced") == "suppressed (bounced)"
    assert mailable_reason(p(paused_until=NOW + timedelta(days=3)), NOW) == "paused by the prospect until 2026-11-27"
    assert mailable_reason(p(paused_until=NOW - timedelta(days=3)), NOW) is None


def test_suppression_reason(engine, people):
    with db.transaction(engine) as session:
        assert suppression_reason(session, "Suppressed@A.jp ") == "unsubscribed"
        assert suppression_reason(session, "warm@a.jp") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('temprature = { in = ["warm"] }', 'seg.toml:2: unknown key "temprature" (did you mean "temperature"?)'),
        ('colour = { eq = "red" }', 'seg.toml:2: unknown key "colour" in [segment]; segment fields are: temperature'),
        ('temperature = { inn = ["warm"] }', 'seg.toml:2: unknown operator "inn" for temperature (did you mean "in"?)'),
        (
            "temperature = { gte = 3 }",
            'seg.toml:2: operator "gte" does not apply to temperature; temperature takes: eq, in, not_in',
        ),
        ('score = { eq = "80" }', 'operator "eq" does not apply to score; score takes: gte, lte'),
        (
            'temperature = { in = ["Hot"] }',
            '"Hot" is not a known temperature (did you mean "hot"?); use one of: hot, warm, cold',
        ),
        ('rank = { eq = "D" }', '"D" is not a known rank; use one of: A, B, C'),
        ('stage = { in = ["sql"] }', '"sql" is not a known stage (did you mean "SQL"?)'),
        (
            'temperature = "warm"',
            'segment.temperature must be a table of operator = value, e.g. temperature = { eq = "…" }',
        ),
        ("temperature = { in = [] }", "segment.temperature.in must be a non-empty array of strings"),
        ('score = { gte = "high" }', "segment.score.gte must be a number"),
        ("last_contact = { older_than = -1 }", "cannot be negative"),
        ("score = { gte = 80, lte = 20 }", "gte 80 is above lte 20; no prospect can match"),
        ("last_contact = { older_than = 60, newer_than = 30 }", "matches nothing"),
        ('stage = { in = ["customer"] }', "add include_customers = true"),
        ('industry = { in = ["製造業"], not_in = ["製造業"] }', "every value chosen is also in not_in"),
        ('include_customers = "yes"', "segment.include_customers must be true or false"),
        ('tags = { has = "" }', "segment.tags.has must be a non-empty string"),
    ],
)
def test_segment_mistakes(tmp_path, text, message):
    found = problems_of(text, tmp_path)
    assert any(message in p for p in found), found


def test_all_segment_mistakes_at_once(tmp_path):
    found = problems_of('temprature = { in = ["warm"] }\nrank = { gte = 1 }\nstage = { in = ["won"] }', tmp_path)
    assert [p.split(":")[1] for p in found] == ["2", "3", "4"]
