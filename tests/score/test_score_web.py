"""Hits through the real tracking server (uvicorn, httpx) change scores as the workspace's scoring.toml says;
machine hits change nothing."""

from __future__ import annotations

import time

import httpx
from scoring_support import CHROME, changes, prospect, state
from webserver import LiveServer, make_config, seed_delivery

from nurture import score
from nurture.compose import links as tracking
from nurture.web import create_app


def wait_for(check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_a_click_through_the_server_promotes_and_machine_opens_do_not(engine, db_url, tmp_path):
    (tmp_path / "scoring.toml").write_text('version = "web"\n[thresholds]\nrank_b = 5\nrank_a = 50\n', encoding="utf-8")
    holder = {}

    def factory(base):
        holder["config"] = make_config(db_url, base, root=tmp_path)
        return create_app(holder["config"], engine=engine, flush_interval=0.02, jobs=[])

    pid = prospect(engine, "web@example.co.jp", language="en")
    did = seed_delivery(engine, pid, subject="Cold chain in 2027")
    try:
        with LiveServer(factory):
            config = holder["config"]
            pixel = tracking.urls_for(config, did, pid)["open_pixel"]
            with httpx.Client(timeout=10, headers={"User-Agent": "Mozilla/5.0"}) as apple:
                for _ in range(6):  # a prefetching proxy: "Mozilla/5.0" alone is labelled machine
                    assert apple.get(pixel).status_code == 200
            assert wait_for(lambda: len(changes(engine, pid)) > 0, timeout=1.0) is False
            assert state(engine, pid)[0] == "C"
            with httpx.Client(timeout=10, headers={"User-Agent": CHROME}) as person:
                r = person.get(tracking.click_url(config, did, 1, "https://example.co.jp/cold-chain"))
                assert r.status_code == 302
            assert wait_for(lambda: state(engine, pid)[0] == "B")
    finally:
        score.configure()
    (c,) = changes(engine, pid, "rank")
    assert c.explanation == 'C→B: human click on "Cold chain in 2027" (+6); 6 machine opens ignored'
    assert c.details["rules_version"] == "web"
