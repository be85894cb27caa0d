"""``/metrics`` (Prometheus) and ``/healthz`` of the tracking server, on a real uvicorn: counters move with real
hits, the deliveries come from the database, and the health check fails when the database really is not there.
"""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import free_port
from sqlalchemy import create_engine
from webserver import LiveServer, make_config, seed_delivery, seed_prospect

from nurture.compose import links as tracking
from nurture.web import create_app

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition by (name, sorted labels); parsing it is itself a check of its format."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_hits_events_and_deliveries(engine, db_url):
    holder = {}

    def factory(base):
        holder["config"] = make_config(db_url, base)
        return create_app(holder["config"], engine=engine, flush_interval=0.02, jobs=[])

    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid)
    seed_delivery(engine, seed_prospect(engine, "hanako@example.co.jp"), item_key="x", state="pending")
    with LiveServer(factory) as server, httpx.Client(timeout=10, headers={"User-Agent": CHROME}) as client:
        before = samples(client.get(server.url + "/metrics").text)
        opened = ("nurture_tracking_requests_total", (("path", "open"),))
        urls = tracking.urls_for(holder["config"], did, pid)
        for _ in range(3):
            assert client.get(urls["open_pixel"]).status_code == 200
        client.get(server.url + "/o/not-a-token.gif")  # a pixel is a pixel: counted, records nothing
        deadline = time.monotonic() + 5
        while True:
            r = client.get(server.url + "/metrics")
            after = samples(r.text)
            events = {k: v for k, v in after.items() if k[0] == "nurture_events_recorded_total"}
            if events or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert r.headers["content-type"].startswith("text/plain")
    assert after[opened] - before.get(opened, 0) == 4
    assert sum(v for (name, labels), v in events.items() if dict(labels)["type"] == "opened") >= 3
    assert {dict(labels)["label"] for (_, labels) in events} <= {"human", "machine", "unknown", "suspect", ""}
    assert after[("nurture_deliveries", (("state", "sent"),))] == 1
    assert after[("nurture_deliveries", (("state", "pending"),))] == 1
    assert ("nurture_event_buffer_pending", ()) in after
    assert ("nurture_deliveries_deferred", ()) in after


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
def test_healthz_is_503_when_the_database_is_unreachable(tmp_path, kind):
    """A real database that is not there: nothing listens on the PostgreSQL port, or the SQLite file's folder
    does not exist. The health check says 503 (and names the error's type), /metrics still answers."""
    if kind == "postgres":
        url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nurture?connect_timeout=2"
    else:
        url = f"sqlite:///{tmp_path}/missing/folder/nurture.db"
    engine = create_engine(url)
    try:
        with LiveServer(lambda base: create_app(make_config(url, base), engine=engine, jobs=[])) as server:
            r = httpx.get(server.url + "/healthz", timeout=10)
            assert r.status_code == 503
            assert r.json()["status"] == "database unreachable" and r.json()["error"] == "OperationalError"
            m = httpx.get(server.url + "/metrics", timeout=10)
            assert m.status_code == 200 and "nurture_tracking_requests_total" in m.text
            assert "nurture_deliveries{" not in m.text  # unknown, not zero
    finally:
        engine.dispose()
