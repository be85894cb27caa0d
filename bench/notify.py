"""Benchmark: the handoff notice pass and the weekly digest queries.

1. Notices: N handoffs (each prospect with 2 score changes, 3 mails and 12 opens/clicks) delivered by
   ``notify_due`` as a mail (memory sender: the MIME bytes are built, nothing leaves) plus a JSON webhook POST to a
   local HTTP server. Baseline in the same run: a bare loop that sends the same number of pre-rendered messages
   through the same sender and POSTs a pre-built JSON body of the same size to the same server (no database, no
   rendering, no claims). The ratio says what reading the facts, rendering ja/en and the outbox bookkeeping cost.
2. Digest: ``owner_digest`` for every owner over P prospects; baseline: one ``SELECT count(*)`` full scan of
   prospects per owner (what any per-owner query without an owner index costs at least).

    python bench/notify.py                                   # SQLite, 1,000 notices, 100,000 prospects
    python bench/notify.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test --notices 2000
"""

from __future__ import annotations

import argparse
import dataclasses
import http.server
import json
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx
from sqlalchemy import func, insert, select, text

from nurture.compose.message import OutgoingMessage
from nurture.core import clock
from nurture.core.config import Config
from nurture.deliver.senders import memory
from nurture.notify import notify_due, render
from nurture.notify.facts import handoff_facts
from nurture.report.owner_digest import owner_digest
from nurture.store import db
from nurture.store.models import Delivery, Event, Handoff, Prospect, ScoreChange

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


class Hook(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: without this, 40 ms of delayed ACK each
    count = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Hook.count += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def prospect_rows(start: int, n: int, owners: int) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        rows.append(
            {
                "email": f"p{i}@example{i % 97}.co.jp",
                "name": f"山田 太郎{i}",
                "company": f"山田製作所{i % 500}",
                "title": "部長",
                "industry": "製造業",
                "temperature": ("cold", "warm", "hot")[i % 3],
                "stage": "MQL",
                "rank": "ABC"[i % 3],
                "score": float(i % 100),
                "owner": f"owner{i % owners}",
                "last_contact_at": NOW - timedelta(days=i % 90),
                "next_action": "電話",
                "next_action_due": date(2026, 11, 1) + timedelta(days=i % 40),
                "language": "",
                "attributes": {},
                "consent_basis": "business_card",
                "consent_source": "bench",
                "status": "active",
                "status_reason": "",
                "frequency_factor": 1.0,
                "created_at": NOW - timedelta(days=200),
                "updated_at": NOW,
                **{
                    f"strength_{k}": 0
                    for k in (
                        "existing_business",
                        "empathy",
                        "contribution",
                        "multiple_contacts",
                        "decision_maker",
                        "invested",
                    )
                },
            }
        )
    return rows


def seed(engine, prospects: int, notices: int, owners: int) -> None:
    with engine.begin() as conn:
        for start in range(0, prospects, 20000):
            conn.execute(insert(Prospect), prospect_rows(start, min(20000, prospects - start), owners))
        ids = list(conn.execute(select(Prospect.id).order_by(Prospect.id).limit(notices)).scalars())
        changes = []
        for pid in ids:
            for field, old, new, days in (("rank", "C", "B", 5), ("rank", "B", "A", 1)):
                changes.append(
                    {
                        "prospect_id": pid,
                        "field": field,
                        "old": old,
                        "new": new,
                        "at": NOW - timedelta(days=days),
                        "cause": "events",
                        "score_before": 40.0,
                        "score_after": 82.0,
                        "event_ids": [],
                        "rules": ["click"],
                        "explanation": f'{old}→{new}: 2 human clicks on "物流2024年問題" (+12)',
                        "details": {},
                    }
                )
        conn.execute(insert(ScoreChange), changes)
        conn.execute(
            insert(Delivery),
            [
                {
                    "campaign": "mfg",
                    "prospect_id": pid,
                    "item_key": f"2026-{m:02d}",
                    "state": "sent",
                    "error": "",
                    "subject": "今月の製造業トピックス",
                    "sender": "smtp",
                    "message_id": f"<{pid}.{m}@x>",
                    "provider_message_id": "",
                    "attempts": 1,
                    "claimed_by": "",
                    "created_at": NOW - timedelta(days=30 * m),
                    "updated_at": NOW,
                    "sent_at": NOW - timedelta(days=30 * m),
                }
                for pid in ids
                for m in (1, 2, 3)
            ],
        )
        deliveries = conn.execute(select(Delivery.id, Delivery.prospect_id)).all()
        events = []
        for did, pid in deliveries:
            for k in range(4):
                events.append(
                    {
                        "type": "opened" if k < 3 else "clicked",
                        "prospect_id": pid,
                        "delivery_id": did,
                        "campaign": "mfg",
                        "item_key": "x",
                        "occurred_at": NOW - timedelta(days=3),
                        "recorded_at": NOW - timedelta(days=3),
                        "source": "pixel",
                        "label": "machine" if k < 2 else "human",
                        "confidence": 0.5,
                        "rule": "",
                        "url": "",
                        "user_agent": "",
                        "ip": "",
                        "data": {},
                    }
                )
        conn.execute(insert(Event), events)
        conn.execute(
            insert(Handoff),
            [
                {
                    "prospect_id": pid,
                    "reason": "rank_A",
                    "owner": "",
                    "state": "open",
                    "created_at": NOW,
                    "notice_due_at": NOW,
                    "notice_attempts": 0,
                    "notice_error": "",
                    "decided_by": "",
                    "verdict_reason": "",
                }
                for pid in ids
            ],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--notices", type=int, default=1000)
    parser.add_argument("--prospects", type=int, default=100_000)
    parser.add_argument("--owners", type=int, default=20)
    args = parser.parse_args()
    url = args.database or f"sqlite:///{tempfile.mkdtemp(prefix='nurture-bench-')}/b.db"
    engine = db.engine_for(url)
    if engine.dialect.name == "postgresql":
        schema = f"bench_notify_{int(time.time())}"
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in url else "?"
        url = f"{url}{sep}options=-csearch_path%3D{schema}"
        engine = db.engine_for(url)
    db.upgrade(engine)
    started = time.perf_counter()
    seed(engine, args.prospects, args.notices, args.owners)
    print(f"seeded {args.prospects:,} prospects, {args.notices:,} handoffs in {time.perf_counter() - started:.1f} s")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
    base = Config()
    config = dataclasses.replace(
        base,
        delivery=dataclasses.replace(base.delivery, sender="memory"),
        identity=dataclasses.replace(base.identity, from_address="nurture@example.co.jp"),
        handoff=dataclasses.replace(base.handoff, default_owner="sales@example.co.jp", webhook_url=hook),
    )

    # Baseline: the same number of pre-rendered mails and pre-built JSON bodies, no database.
    with engine.connect() as conn:
        first = conn.execute(select(Handoff.id).order_by(Handoff.id).limit(1)).scalar_one()
        facts = handoff_facts(conn, first)
    assert facts is not None
    rendered = render.notice(
        facts, language="ja", time_zone="Asia/Tokyo", owner="sales", escalation=False, ack_minutes=60
    )
    body = json.dumps({"text": rendered.subject, "handoff": facts}, ensure_ascii=False, default=str).encode()
    memory.clear()
    sender = memory.MemorySender()
    client = httpx.Client()  # the bare loop gets a kept-alive client too
    started = time.perf_counter()
    for i in range(args.notices):
        sender.send(
            OutgoingMessage(
                delivery_id=i,
                campaign="nurture-handoff",
                to_address="sales@example.co.jp",
                from_address="nurture@example.co.jp",
                subject=rendered.subject,
                html=rendered.html,
                text=rendered.text,
            )
        )
        client.post(hook, content=body, headers={"Content-Type": "application/json"})
    bare = time.perf_counter() - started
    memory.clear()
    Hook.count = 0

    with clock.frozen(NOW):
        started = time.perf_counter()
        report = notify_due(engine, config, limit=args.notices)
        took = time.perf_counter() - started
    assert len(report.notified) == args.notices and Hook.count == args.notices, (len(report.notified), Hook.count)
    assert len(memory.outbox) == args.notices
    print(
        f"notices [{engine.dialect.name}]: {args.notices:,} in {took:.2f} s = {args.notices / took:,.0f}/s "
        f"({took / args.notices * 1000:.1f} ms each); bare send+POST loop {args.notices / bare:,.0f}/s; "
        f"ratio {bare / took:.2f}"
    )

    with engine.connect() as conn:
        owners = list(conn.execute(select(Prospect.owner).group_by(Prospect.owner)).scalars())
        started = time.perf_counter()
        for _ in owners:
            conn.execute(select(func.count()).select_from(Prospect).where(Prospect.status == "active")).scalar_one()
        scan = time.perf_counter() - started
        started = time.perf_counter()
        rows = 0
        for o in owners:
            d = owner_digest(conn, o, since=NOW - timedelta(days=7), until=NOW, no_contact_days=30)
            rows += sum(d.counts.values())
        took = time.perf_counter() - started
    print(
        f"digest [{engine.dialect.name}]: {len(owners)} owners over {args.prospects:,} prospects in {took:.2f} s "
        f"({took / len(owners) * 1000:.0f} ms per owner, {rows:,} rows counted); "
        f"bare count(*) scan per owner {scan / len(owners) * 1000:.0f} ms"
    )
    server.shutdown()
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
