"""Scoring stays exact with several tracking workers (issue 16, item 2): a real ``nurture serve --workers 2``
takes human clicks for the same prospects from several clients at once; afterwards every prospect's stored
score, rank, temperature and stage are what scoring it from its recorded events gives at the instant it was
scored, exactly as with one process. Each worker scores in the event's transaction with the prospect's row
locked, so two workers recording for one prospect take turns and the later one sees the earlier one's event.
"""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest
from servers import free_port
from sqlalchemy import func, select
from webserver import CHROME, make_config, seed_delivery, seed_prospect, start_serve

from nurture import score
from nurture.compose import links as tracking
from nurture.score import rules as rules_module
from nurture.store.models import Event, Prospect

RULES = 'version = "workers"\n[thresholds]\nrank_b = 5\nrank_a = 14\n'


@pytest.mark.slow
def test_two_workers_score_every_click_exactly(engine, db_url, tmp_path):
    port = free_port()
    config = make_config(db_url, f"http://127.0.0.1:{port}")
    people = []
    for i in range(6):
        pid = seed_prospect(engine, f"w{i}@example.co.jp", language="en")
        people.append((pid, seed_delivery(engine, pid, item_key=f"w{i}", subject=f"Issue {i}")))
    # One link per mail, clicked again and again: several *different* links of one mail within seconds would
    # be a scanner's click burst (nurture.track.botdetect), and then nothing scores at all.
    clicks = [tracking.click_url(config, did, 1, f"https://example.co.jp/article/{pid}") for pid, did in people]
    (tmp_path / "scoring.toml").write_text(RULES, encoding="utf-8")
    proc = start_serve(tmp_path, db_url, port, "--workers", "2")
    answered = []
    try:

        def reader(share: list[str]) -> None:  # a person reading: one link after another, like a browser
            with httpx.Client(timeout=10, headers={"User-Agent": CHROME}) as client:
                for url in share:
                    answered.append(client.get(url).status_code)
                    time.sleep(0.05)

        # Each client clicks every prospect's links, so both workers record for the same prospect at once.
        readers = [threading.Thread(target=reader, args=(clicks[k % 3 :] + clicks * 2,)) for k in range(4)]
        for t in readers:
            t.start()
        for t in readers:
            t.join(120)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the workers flush their buffers within a second
            with engine.connect() as conn:
                recorded = conn.scalar(select(func.count()).where(Event.type == "clicked"))
            if recorded >= len(answered):
                break
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    assert answered and set(answered) == {302}, out
    assert recorded == len(answered), "a click was lost"

    rules = rules_module.load(tmp_path / "scoring.toml")  # what the workers scored with
    with engine.connect() as conn:
        stored = {
            r.id: r for r in conn.execute(select(Prospect.__table__).where(Prospect.id.in_([p for p, _ in people])))
        }
        humans = conn.scalar(select(func.count()).where(Event.type == "clicked", Event.label == "human"))
        assert humans > 0, "the clicks were read as a person's"
        for pid, r in stored.items():
            assert r.scored_at is not None, pid
            want = score.score_all(conn, rules, r.scored_at)[pid]
            assert r.score == pytest.approx(want.total, abs=1e-5), pid
            assert (r.rank, r.temperature, r.stage) == (want.rank, want.temperature, want.stage), pid
    assert any(r.rank != "C" for r in stored.values()), "the clicks moved somebody"
