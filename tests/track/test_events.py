"""record_events(): the single door for events, its effects and labels, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from webserver import seed_delivery, seed_prospect

from nurture import track
from nurture.store.models import Delivery, Event, Prospect, Suppression, email_hash
from nurture.track import EventBuffer, NewEvent, record_event, record_events

NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
CHROME = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15"


def prospect(engine, pid):
    with engine.connect() as conn:
        return conn.execute(select(Prospect).where(Prospect.id == pid)).mappings().one()


def suppressions(engine):
    with engine.connect() as conn:
        return {r.email_hash: r.reason for r in conn.execute(select(Suppression))}


def stored(engine, **where):
    with engine.connect() as conn:
        stmt = select(Event).order_by(Event.id)
        for k, v in where.items():
            stmt = stmt.where(getattr(Event, k) == v)
        return conn.execute(stmt).scalars().all() if False else conn.execute(stmt).mappings().all()


def test_unsubscribe_sets_status_and_suppression_once(engine):
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid)
    e = NewEvent(track.UNSUBSCRIBED, NOW, "web", delivery_id=did)
    r = record_event(engine, e)
    assert (r.inserted, r.suppressed) == (1, 1)
    p = prospect(engine, pid)
    assert p["status"] == "unsubscribed" and p["status_changed_at"] is not None
    assert suppressions(engine) == {email_hash("taro@example.co.jp"): "unsubscribed"}
    changed_at = p["status_changed_at"]
    r = record_event(engine, e)  # a second click on the button: recorded, nothing else changes
    assert r.suppressed == 0 and prospect(engine, pid)["status_changed_at"] == changed_at
    ev_rows = stored(engine, type="unsubscribed")
    assert [(x["prospect_id"], x["campaign"], x["item_key"]) for x in ev_rows] == [(pid, "mfg-insights", "2026-11")] * 2


def test_bounces_complaints_and_deferrals(engine):
    hard, soft, spam, late = (seed_prospect(engine, f"{n}@example.com") for n in ("hard", "soft", "spam", "late"))
    record_events(
        engine,
        [
            NewEvent(track.BOUNCED, NOW, "sendgrid", prospect_id=hard, data={"bounce": "hard"}),
            NewEvent(track.BOUNCED, NOW, "sendgrid", prospect_id=soft, data={"bounce": "soft"}),
            NewEvent(track.COMPLAINED, NOW, "sendgrid", prospect_id=spam),
            NewEvent(track.DEFERRED, NOW, "sendgrid", prospect_id=late),
        ],
    )
    assert [prospect(engine, p)["status"] for p in (hard, soft, spam, late)] == [
        "bounced",
        "active",
        "complained",
        "active",
    ]
    assert suppressions(engine) == {
        email_hash("hard@example.com"): "bounced",
        email_hash("spam@example.com"): "complained",
    }
    assert len(stored(engine)) == 4


def test_unknown_address_is_suppressed_by_hash(engine):
    record_event(
        engine, NewEvent(track.DROPPED, NOW, "sendgrid", email="Stranger@Example.com", data={"suppress": "bounced"})
    )
    assert suppressions(engine) == {email_hash("stranger@example.com"): "bounced"}


def test_first_reason_wins_and_erased_stays_erased(engine):
    pid = seed_prospect(engine, "gone@example.com", status="erased")
    record_event(engine, NewEvent(track.UNSUBSCRIBED, NOW, "web", prospect_id=pid))
    assert prospect(engine, pid)["status"] == "erased"
    pid2 = seed_prospect(engine, "two@example.com")
    record_event(engine, NewEvent(track.COMPLAINED, NOW, "sendgrid", prospect_id=pid2))
    record_event(engine, NewEvent(track.UNSUBSCRIBED, NOW, "web", prospect_id=pid2))
    assert prospect(engine, pid2)["status"] == "complained"


def test_dedup_key_within_and_across_batches(engine):
    pid = seed_prospect(engine)
    batch = [
        NewEvent(track.DELIVERED, NOW, "sendgrid", prospect_id=pid, dedup_key="sendgrid:a"),
        NewEvent(track.DELIVERED, NOW, "sendgrid", prospect_id=pid, dedup_key="sendgrid:a"),
        NewEvent(track.OPENED, NOW, "sendgrid", prospect_id=pid, dedup_key="sendgrid:b"),
    ]
    assert (record_events(engine, batch).inserted, record_events(engine, batch).inserted) == (2, 0)
    assert record_events(engine, batch).duplicates == 3
    assert len(stored(engine)) == 2


def test_processed_reconciles_an_ambiguous_delivery(engine):
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid, state="unknown", sent_at=None)
    other = seed_delivery(engine, pid, item_key="x", state="failed")
    r = record_events(
        engine,
        [
            NewEvent(track.SENT, NOW, "sendgrid", delivery_id=did, provider_message_id="abc"),
            NewEvent(track.SENT, NOW, "sendgrid", delivery_id=other),
        ],
    )
    assert r.reconciled == 1
    with engine.connect() as conn:
        rows = {d.id: d for d in conn.execute(select(Delivery))}
    assert rows[did].state == "sent" and rows[did].sent_at == NOW and rows[did].provider_message_id == "abc"
    assert rows[other].state == "failed"


def test_provider_message_id_finds_the_delivery(engine):
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid, provider_message_id="14c5d75ce93")
    record_event(engine, NewEvent(track.DELIVERED, NOW, "sendgrid", provider_message_id="14c5d75ce93"))
    assert stored(engine)[0]["delivery_id"] == did and stored(engine)[0]["prospect_id"] == pid


def test_missing_delivery_is_kept_without_it(engine):
    r = record_event(engine, NewEvent(track.OPENED, NOW, "pixel", delivery_id=999_999, user_agent=CHROME))
    assert r.inserted == 1 and stored(engine)[0]["delivery_id"] is None


def test_preferences_pause_and_frequency(engine):
    pid = seed_prospect(engine)
    until = NOW + timedelta(days=90)
    record_events(
        engine,
        [
            NewEvent(track.PAUSED, NOW, "web", prospect_id=pid, data={"paused_until": until.isoformat()}),
            NewEvent(track.FREQUENCY_CHANGED, NOW, "web", prospect_id=pid, data={"frequency_factor": 2.0}),
        ],
    )
    p = prospect(engine, pid)
    assert p["paused_until"] == until and p["frequency_factor"] == 2.0 and p["status"] == "active"


def test_opens_are_labelled_with_the_delivery_sent_at(engine):
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid, sent_at=NOW)
    record_events(
        engine,
        [
            NewEvent(track.OPENED, NOW + timedelta(seconds=1), "pixel", delivery_id=did, user_agent=CHROME),
            NewEvent(track.OPENED, NOW + timedelta(hours=2), "pixel", delivery_id=did, user_agent=CHROME),
            NewEvent(
                track.OPENED, NOW + timedelta(hours=2), "sendgrid", delivery_id=did, data={"sg_machine_open": True}
            ),
        ],
    )
    assert [(e["label"], e["rule"]) for e in stored(engine)] == [
        ("machine", "too_soon"),
        ("human", "browser"),
        ("machine", "sg_machine_open"),
    ]


def test_click_burst_relabels_earlier_clicks_across_batches(engine):
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid, sent_at=NOW - timedelta(hours=1))
    t = NOW
    record_event(
        engine,
        NewEvent(
            track.CLICKED,
            t,
            "link",
            delivery_id=did,
            user_agent=CHROME,
            url="https://a.example/",
            data={"link_index": 0},
        ),
    )
    assert stored(engine)[0]["label"] == "human"
    record_event(
        engine,
        NewEvent(
            track.CLICKED,
            t + timedelta(milliseconds=400),
            "link",
            delivery_id=did,
            user_agent=CHROME,
            url="https://b.example/",
            data={"link_index": 1},
        ),
    )
    assert [(e["label"], e["rule"]) for e in stored(engine)] == [("machine", "click_burst")] * 2
    record_event(
        engine,
        NewEvent(
            track.CLICKED,
            t + timedelta(minutes=5),
            "link",
            delivery_id=did,
            user_agent=CHROME,
            url="https://a.example/",
            data={"link_index": 0},
        ),
    )
    assert stored(engine)[-1]["label"] == "human"


def test_honeypot_marks_the_clicker(engine):
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid, sent_at=NOW - timedelta(hours=1))
    record_event(
        engine,
        NewEvent(
            track.CLICKED,
            NOW,
            "link",
            delivery_id=did,
            user_agent=CHROME,
            ip="192.0.2.1",
            url="https://a.example/",
            data={"link_index": 0},
        ),
    )
    record_event(
        engine,
        NewEvent(
            track.CLICKED,
            NOW + timedelta(seconds=30),
            "link",
            delivery_id=did,
            user_agent=CHROME,
            ip="192.0.2.1",
            data={"honeypot": True},
        ),
    )
    assert [(e["label"], e["rule"]) for e in stored(engine)] == [
        ("machine", "honeypot_clicker"),
        ("machine", "honeypot"),
    ]
    assert prospect(engine, pid)["status"] == "active"


def test_listener_sees_only_inserted_rows(engine):
    seen = []

    def listener(conn, rows):
        seen.append([r["dedup_key"] for r in rows])

    track.add_listener(listener)
    try:
        batch = [NewEvent(track.DELIVERED, NOW, "sendgrid", dedup_key="k1")]
        record_events(engine, batch)
        record_events(engine, batch)
    finally:
        track.remove_listener(listener)
    assert seen == [["k1"], []]


def test_a_failing_listener_rolls_the_batch_back(engine):
    """Listeners run in the transaction: scoring that fails leaves no event without its score."""
    import pytest

    pid = seed_prospect(engine)

    def listener(conn, rows):
        raise RuntimeError("scoring failed")

    track.add_listener(listener)
    try:
        with pytest.raises(RuntimeError, match="scoring failed"):
            record_event(engine, NewEvent(track.UNSUBSCRIBED, NOW, "web", prospect_id=pid))
    finally:
        track.remove_listener(listener)
    assert stored(engine) == [] and suppressions(engine) == {} and prospect(engine, pid)["status"] == "active"


def test_buffer_writes_everything_on_close(engine):
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid)
    buffer = EventBuffer(engine, interval=10, max_batch=250)  # long interval: close() must do the work
    buffer.start()
    for i in range(1000):
        buffer.add(NewEvent(track.OPENED, NOW + timedelta(seconds=i), "pixel", delivery_id=did, user_agent=CHROME))
    buffer.close()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Event)).scalar_one() == 1000
    assert buffer.pending == 0 and buffer.recorded == 1000


def test_list_events(engine):
    pid = seed_prospect(engine)
    record_events(
        engine,
        [
            NewEvent(track.MET, NOW, "import", prospect_id=pid),
            NewEvent(track.REPLIED, NOW + timedelta(days=1), "import", prospect_id=pid),
        ],
    )
    rows = track.list_events(engine, prospect_id=pid)
    assert [r["type"] for r in rows] == ["replied", "met"] and rows[0]["email"] == "taro@example.co.jp"
    assert [r["type"] for r in track.list_events(engine, types=["met"])] == ["met"]


def test_vocabulary_is_checked():
    import pytest

    with pytest.raises(ValueError, match="unknown event type"):
        NewEvent("opend", NOW, "pixel")
    with pytest.raises(ValueError, match="timezone"):
        NewEvent(track.OPENED, datetime(2026, 1, 1), "pixel")


# --------------------------------------------------------------------------------------------- nurture events import


def _init(runner, workspace):
    from nurture.cli.main import main

    result = runner.invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    from nurture.core.config import load
    from nurture.store import db

    return db.engine_for(load().database_url)


def _run(runner, *args):
    from nurture.cli.main import main

    return runner.invoke(main, list(args))


def test_import_cp932_japanese_headers_and_reimport(runner, workspace):
    engine = _init(runner, workspace)
    pid = seed_prospect(engine, "taro@example.co.jp")
    seed_prospect(engine, "hanako@example.co.jp")
    (workspace / "events.csv").write_bytes(
        "メールアドレス,種別,日付,タイトル,メモ,会場\r\n"
        "Taro@Example.co.jp,セミナー参加,2026/11/20 14:00,製造DXセミナー,質問あり,東京\r\n"
        "hanako@example.co.jp,資料ＤＬ,2026/11/21,①調達ガイド,,\r\n"
        "taro@example.co.jp,面談,2026-11-22,,髙橋部長同席,\r\n".encode("cp932")
    )
    r = _run(runner, "events", "import", "events.csv")
    assert r.exit_code == 0, r.output
    assert "(cp932): recorded 3, already recorded 0, rejected 0" in r.output
    r = _run(runner, "events", "import", "events.csv")
    assert "recorded 0, already recorded 3" in r.output
    rows = stored(engine)
    assert [x["type"] for x in rows] == ["seminar_attended", "document_downloaded", "met"]
    seminar = rows[0]
    assert seminar["prospect_id"] == pid and seminar["source"] == "import"
    assert seminar["occurred_at"] == datetime(2026, 11, 20, 5, 0, tzinfo=UTC)  # 14:00 Asia/Tokyo
    assert seminar["data"]["title"] == "製造DXセミナー" and seminar["data"]["attributes"] == {"会場": "東京"}
    assert rows[1]["data"]["title"] == "①調達ガイド" and rows[2]["data"]["note"] == "髙橋部長同席"
    r = _run(runner, "events", "list", "--prospect", "taro@example.co.jp", "--json")
    import json

    assert [e["type"] for e in json.loads(r.output)] == ["met", "seminar_attended"]


def test_import_bad_rows_all_or_nothing(runner, workspace):
    engine = _init(runner, workspace)
    seed_prospect(engine, "taro@example.co.jp")
    (workspace / "track.csv").write_text(
        "\ufeffEmail,Type,Date,Title\n"
        "taro@example.co.jp,replied,2026-11-20,Re: newsletter\n"
        "not-an-address,met,2026-11-20,\n"
        "taro@example.co.jp,lunch,2026-11-20,\n"
        "taro@example.co.jp,met,2026-13-45,\n"
        "nobody@example.com,met,2026-11-20,\n"
        "taro@example.co.jp,met,,\n",
        encoding="utf-8",
    )
    r = _run(runner, "events", "import", "track.csv")
    assert r.exit_code == 1
    for line in (
        'track.csv: row 3, email: "not-an-address" is not a valid address',
        'track.csv: row 4, type: "lunch" is not an offline event type',
        'track.csv: row 5, date: "2026-13-45" is not a real date',
        'track.csv: row 6, email: "nobody@example.com" is not a known prospect',
        'track.csv: row 7, date: "" is empty',
    ):
        assert line in r.output, r.output
    assert "nothing was recorded" in r.output and stored(engine) == []
    r = _run(runner, "events", "import", "track.csv", "--dry-run", "--skip-invalid")
    assert "would record 1" in r.output and stored(engine) == []
    r = _run(runner, "events", "import", "track.csv", "--skip-invalid", "--json")
    import json

    summary = json.loads(r.output)
    assert summary["recorded"] == 1 and len(summary["rejected"]) == 5 and summary["written"]
    assert [x["type"] for x in stored(engine)] == ["replied"]


def test_import_missing_columns_is_a_clear_error(runner, workspace):
    _init(runner, workspace)
    (workspace / "x.csv").write_text("email,when?\na@example.com,2026-11-20\n", encoding="utf-8")
    r = _run(runner, "events", "import", "x.csv")
    assert r.exit_code == 1 and "missing column(s): type / 種別, date / 日付" in r.output
    assert "Traceback" not in r.output
