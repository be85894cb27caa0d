"""A fixed history for the report tests: five prospects, two campaigns, labelled opens and clicks, the scoring
history (score_changes) and handoffs written directly as scoring would have, a win and a referral."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert, text

from nurture.store.models import Delivery, Event, Handoff, Prospect, ScoreChange

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # Monday 12:00 in Tokyo
T0 = datetime(2026, 2, 10, 1, 0, tzinfo=UTC)  # the mails went out (Tuesday 10:00 JST)


def copy_campaigns(folder: Path) -> None:
    shutil.copytree(REPO / "campaigns", folder / "campaigns")
    shutil.copytree(REPO / "templates", folder / "templates")


def _p(pid: int, email: str, **kw: object) -> dict[str, object]:
    row: dict[str, object] = dict(
        id=pid,
        email=email,
        name="",
        company="",
        industry="製造業",
        temperature="cold",
        rank="C",
        stage="MQL",
        owner="佐藤",
        consent_basis="business_card",
        status="active",
        attributes={},
        frequency_factor=1.0,
        created_at=datetime(2025, 10, 5, tzinfo=UTC),
        updated_at=T0,
    )
    row.update(kw)
    return row


def load(engine: Engine) -> None:
    prospects = [
        _p(1, "taro@mfg.example.jp", name="山田太郎", company="山田製作所", temperature="warm", rank="B"),
        _p(2, "hanako@mfg.example.jp", name="鈴木花子", company="鈴木工業", last_contact_at=NOW - timedelta(days=10)),
        _p(
            3,
            "bob@ops.example.com",
            name="Bob Lee",
            company="Ops Inc",
            industry="IT",
            owner="Smith",
            created_at=datetime(2025, 12, 20, tzinfo=UTC),
        ),
        _p(4, "noconsent@mfg.example.jp", consent_basis="unknown", created_at=datetime(2025, 12, 1, tzinfo=UTC)),
        _p(
            5,
            "client@mfg.example.jp",
            name="高橋",
            company="高橋商事",
            stage="customer",
            next_action="見積もり再訪",
            next_action_due=date(2026, 2, 20),
        ),
    ]
    deliveries = [
        dict(id=1, campaign="mfg-insights", prospect_id=1, item_key="labor-shortage", state="sent", sent_at=T0),
        dict(id=2, campaign="mfg-insights", prospect_id=2, item_key="labor-shortage", state="sent", sent_at=T0),
        dict(
            id=3,
            campaign="saas-ops-digest",
            prospect_id=3,
            item_key="on-call",
            state="sent",
            sent_at=T0 - timedelta(days=50),
        ),
        dict(id=4, campaign="mfg-insights", prospect_id=5, item_key="labor-shortage", state="sent", sent_at=T0),
    ]
    for d in deliveries:
        d.update(created_at=d["sent_at"], updated_at=d["sent_at"], subject="s")

    def ev(eid, kind, pid, did, minutes, label="human", url="", campaign="mfg-insights", item="labor-shortage", **kw):
        return dict(
            id=eid,
            type=kind,
            prospect_id=pid,
            delivery_id=did,
            campaign=campaign if did else "",
            item_key=item if did else "",
            occurred_at=T0 + timedelta(minutes=minutes),
            recorded_at=T0,
            source="pixel",
            label=label,
            confidence=0.8,
            rule="",
            url=url,
            user_agent="",
            ip="",
            data=kw.get("data", {}),
            dedup_key=None,
        )

    events = [
        ev(1, "delivered", 1, 1, 1, label="unknown"),
        ev(2, "delivered", 2, 2, 1, label="unknown"),
        ev(3, "opened", 1, 1, 2, label="machine"),  # a scanner on arrival
        ev(4, "opened", 1, 1, 600),
        ev(5, "opened", 1, 1, 1500),  # the same person again: 2 total, 1 unique
        ev(6, "clicked", 1, 1, 601, url="https://example.jp/a"),
        ev(7, "clicked", 1, 1, 3, label="machine", url="https://example.jp/a"),
        ev(8, "clicked", 1, 1, 3, label="machine", url="https://example.jp/b"),
        ev(9, "opened", 2, 2, 700, label="unknown"),
        ev(10, "opened", 2, 2, 800),
        ev(11, "complained", 2, 2, 900, label="unknown"),
        ev(12, "opened", 5, 4, 8000),
        ev(13, "seminar_attended", 1, None, 20000),
        ev(14, "won", 5, None, 24000, data={"amount": 1200000, "term": "short"}),
        ev(15, "referred", 5, None, 25000, data={"referred": "new@lead.example.jp"}),
    ]
    changes = [
        dict(
            id=1,
            prospect_id=1,
            field="rank",
            old="C",
            new="B",
            at=T0 + timedelta(minutes=601),
            cause="events",
            score_before=20,
            score_after=32,
            event_ids=[3, 4, 6, 7, 8],
            rules=["human_click"],
            explanation='C→B: 1 human click on "labor-shortage" (+12); 3 machine events ignored',
            details={},
        ),
        dict(
            id=2,
            prospect_id=1,
            field="temperature",
            old="cold",
            new="warm",
            at=T0 + timedelta(minutes=20000),
            cause="events",
            score_before=32,
            score_after=52,
            event_ids=[13],
            rules=["seminar"],
            explanation="cold→warm: seminar (+20)",
            details={},
        ),
        dict(
            id=3,
            prospect_id=1,
            field="rank",
            old="B",
            new="A",
            at=T0 + timedelta(minutes=20000),
            cause="events",
            score_before=32,
            score_after=52,
            event_ids=[13, 5],
            rules=["seminar"],
            explanation="B→A: seminar (+20)",
            details={},
        ),
        dict(
            id=4,
            prospect_id=3,
            field="rank",
            old="B",
            new="C",
            at=T0 + timedelta(days=5),
            cause="decay",
            score_before=30,
            score_after=18,
            event_ids=[],
            rules=[],
            explanation="B→C: no activity (decay)",
            details={},
        ),
        dict(
            id=5,
            prospect_id=2,
            field="rank",
            old="C",
            new="B",
            at=datetime(2026, 1, 5, tzinfo=UTC),
            cause="events",
            event_ids=[],
            rules=[],
            explanation="before the period",
            details={},
        ),
    ]
    handoffs = [
        dict(
            id=1,
            prospect_id=1,
            reason="rank_A",
            change_id=3,
            owner="佐藤",
            state="acknowledged",
            created_at=T0 + timedelta(minutes=20000),
            decided_at=T0 + timedelta(minutes=20000 + 300),
            decided_by="佐藤",
        ),
        dict(
            id=2,
            prospect_id=2,
            reason="inquiry",
            owner="佐藤",
            state="rejected",
            created_at=T0 + timedelta(days=2),
            decided_at=T0 + timedelta(days=3),
            decided_by="佐藤",
            verdict_reason="学生からの問い合わせ",
        ),
        dict(
            id=3,
            prospect_id=3,
            reason="rank_A",
            owner="Smith",
            state="open",
            created_at=T0 + timedelta(days=1),
            escalated_at=T0 + timedelta(days=3),
        ),
    ]
    with engine.begin() as conn:  # row by row: the rows name different columns (the rest take their defaults)
        for model, rows in (
            (Prospect, prospects),
            (Delivery, deliveries),
            (Event, events),
            (ScoreChange, changes),
            (Handoff, handoffs),
        ):
            for row in rows:
                conn.execute(insert(model).values(**row))
        if engine.dialect.name == "postgresql":  # explicit ids: move the sequences past them
            for table in ("prospects", "deliveries", "events", "score_changes", "handoffs"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 1000)"))
