"""The complaint brake: `nurture send` pauses a campaign above 0.3 % spam complaints; `nurture resume` lifts it
and the campaign starts counting afresh."""

from __future__ import annotations

from datetime import timedelta

from send_workspace import TUESDAY_10_JST, add_prospects, deliveries, send
from sqlalchemy import select, update

from nurture.cli.main import main
from nurture.core import config as configuration
from nurture.core.clock import parse_instant
from nurture.store import db
from nurture.store.models import Delivery, Prospect
from nurture.track import NewEvent, record_events


def _engine(ws):
    return db.engine_for(configuration.load(ws / "nurture.toml").database_url)


def _age_deliveries(ws, days):
    """Move every delivery ``days`` into the past, so that the campaign is due again."""
    engine = _engine(ws)
    with engine.begin() as conn:
        for did, sent_at in conn.execute(select(Delivery.id, Delivery.sent_at)).all():
            conn.execute(update(Delivery).where(Delivery.id == did).values(sent_at=sent_at - timedelta(days=days)))


def test_a_campaign_above_the_complaint_rate_is_paused_until_resumed(ws, runner, monkeypatch):
    add_prospects(ws, [f"p{i}@example.com,P{i},Co,製造業,warm,opt_in" for i in range(6)])
    result, report = send(runner)
    assert report["sent"] == 6 and not report["paused_campaigns"]
    engine = _engine(ws)
    with engine.connect() as conn:
        first = conn.execute(select(Delivery.id).order_by(Delivery.id)).scalars().first()
    now = parse_instant(TUESDAY_10_JST)
    record_events(engine, [NewEvent("complained", now, "sendgrid", delivery_id=first)])  # 1 of 6: 16 %
    _age_deliveries(ws, 15)
    result, report = send(runner, "--dry-run")
    assert "alpha" in report["paused_campaigns"] and "complaint rate 16.67%" in report["paused_campaigns"]["alpha"]
    result, report = send(runner)
    assert report["sent"] == 0 and "nurture resume alpha" in report["paused_campaigns"]["alpha"]
    assert len(deliveries(ws)) == 6, "nothing planned for a paused campaign"
    assert runner.invoke(main, ["resume", "alpha"]).exit_code == 0
    result, report = send(runner)  # the complaint was before the pause: counted no more
    assert not report["paused_campaigns"] and report["sent"] == 5  # the complainer is suppressed


def test_a_low_complaint_rate_does_not_pause(ws, runner):
    add_prospects(ws, [f"p{i}@example.com,P{i},Co,製造業,warm,opt_in" for i in range(4)])
    send(runner)
    result, report = send(runner)
    assert not report["paused_campaigns"]
    with _engine(ws).connect() as conn:
        assert conn.scalar(select(Prospect.id).where(Prospect.status != "active")) is None
