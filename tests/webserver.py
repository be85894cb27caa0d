"""The tracking app served for real: uvicorn on a free 127.0.0.1 port in a background thread, plus helpers that
seed prospects and deliveries with Core inserts (every NOT NULL column given) on either database.

    from webserver import LiveServer, seed_prospect, seed_delivery, make_config

    with LiveServer(lambda base: create_app(make_config(db_url, base), engine=engine)) as server:
        httpx.get(server.url + "/healthz")

The app factory receives the server's base URL first, so links signed for the config point at this server.
Leaving the block runs the app's shutdown (lifespan), which flushes buffered events.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import Engine, insert

from nurture.core import clock
from nurture.core.config import Config
from nurture.store.models import Delivery, Prospect
from nurture.store.states import DeliveryState

HOST = "127.0.0.1"
SECRET = "test-secret-0123456789abcdef"
#: A desktop browser's user agent: hits with it (and none of a machine's signs) are labelled human.
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


def make_config(db_url: str, base_url: str, root: Path | None = None, **sections: Any) -> Config:
    """A Config for tests: the database, a secret, ``base_url``; ``sections`` replace fields per section,
    e.g. ``sendgrid={"webhook_public_key": key}``. ``root`` is where campaigns/ and templates/ are looked for
    (default: a folder with neither)."""
    config = Config()
    changes: dict[str, Any] = {
        "database": dataclasses.replace(config.database, url=db_url),
        "tracking": dataclasses.replace(config.tracking, secret=SECRET, base_url=base_url),
        "identity": dataclasses.replace(
            config.identity,
            organization="株式会社テスト",
            inquiry="info@example.co.jp",
            unsubscribe_mailto="unsubscribe@example.co.jp",
        ),
    }
    for name, values in sections.items():
        changes[name] = dataclasses.replace(changes.get(name, getattr(config, name)), **values)
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="nurture-empty-"))
    return dataclasses.replace(config, root=root, **changes)


class LiveServer:
    """uvicorn serving ``factory(base_url)`` on a free loopback port until :meth:`stop`."""

    def __init__(self, factory: Callable[[str], Any]) -> None:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and
        # without it every response written in two parts waits ~40 ms for a delayed ACK (Nagle).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"
        self.app = factory(self.url)
        self.server = uvicorn.Server(uvicorn.Config(self.app, lifespan="on", log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def seed_prospect(
    engine: Engine, email: str = "taro@example.co.jp", *, language: str = "", status: str = "active", **values: Any
) -> int:
    now = clock.now()
    row = {
        "email": email,
        "name": "山田 太郎",
        "company": "山田製作所",
        "title": "",
        "industry": "製造業",
        "temperature": "warm",
        "stage": "MQL",
        "rank": "B",
        "score": 0.0,
        "owner": "",
        "next_action": "",
        "time_zone": "",
        "language": language,
        "attributes": {},
        "consent_basis": "business_card",
        "consent_source": "test",
        "status": status,
        "status_reason": "",
        "frequency_factor": 1.0,
        "created_at": now,
        "updated_at": now,
        **{
            f"strength_{n}": 0
            for n in ("existing_business", "empathy", "contribution", "multiple_contacts", "decision_maker", "invested")
        },
    }
    row.update(values)
    with engine.begin() as conn:
        return conn.execute(insert(Prospect).values(row).returning(Prospect.id)).scalar_one()


def seed_delivery(
    engine: Engine,
    prospect_id: int,
    *,
    campaign: str = "mfg-insights",
    item_key: str = "2026-11",
    state: str = DeliveryState.SENT,
    sent_at: datetime | None = None,
    provider_message_id: str = "",
    subject: str = "今月の製造業トピックス",
    language: str | None = "",
) -> int:
    """A delivery row. ``language`` None leaves the column out, as inserts made before migration 0004 did."""
    now = clock.now()
    if sent_at is None and state == DeliveryState.SENT:
        sent_at = now - timedelta(hours=1)
    row = {
        "campaign": campaign,
        "prospect_id": prospect_id,
        "item_key": item_key,
        "state": state,
        "error": "",
        "subject": subject,
        "sender": "sendgrid",
        "message_id": f"<{item_key}.{prospect_id}@example.co.jp>",
        "provider_message_id": provider_message_id,
        "attempts": 1,
        "claimed_by": "",
        "created_at": now - timedelta(hours=2),
        "updated_at": now,
        "sent_at": sent_at,
    }
    if language is not None:
        row["language"] = language
    with engine.begin() as conn:
        return conn.execute(insert(Delivery).values(row).returning(Delivery.id)).scalar_one()


def start_serve(folder: Path, db_url: str, port: int, *args: str) -> subprocess.Popen:
    """A real ``nurture serve --port PORT ARGS`` in ``folder`` (a nurture.toml for ``db_url`` is written there),
    once its /healthz answers; its output is on the process's stdout. The caller stops it."""
    (folder / "nurture.toml").write_text(
        f'[database]\nurl = "{db_url}"\n\n[tracking]\nsecret = "{SECRET}"\nbase_url = "http://127.0.0.1:{port}"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nurture", "serve", "--port", str(port), *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError(proc.communicate()[0].decode()) from None
            time.sleep(0.05)
