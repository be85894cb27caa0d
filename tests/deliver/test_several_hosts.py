"""Several machines sharing one database (issue 16, item 2): each "host" is a folder of its own (its own
nurture.toml, campaign files and templates, its own SMTP relay, its own `nurture send` process), as on separate
machines; only the database is shared. Whatever the timing, every due prospect gets exactly one mail, through
the relay of the host whose report counts it.

Planning is serialised by the database's lock (an advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) and
a delivery is unique per (campaign, prospect, item); claims skip rows another host has leased. Runs on
PostgreSQL, the database several machines share (tests/deliver/test_sending.py has two senders of one folder on
both databases).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from send_workspace import TUESDAY_10_JST, add_prospects, write_config
from servers import SmtpTestServer
from sqlalchemy import func, select

from nurture.core import config as configuration
from nurture.store import db
from nurture.store.models import Delivery


def _host(ws: Path, tmp_path: Path, name: str, db_url: str, port: int) -> Path:
    """A copy of the workspace's campaigns and templates in a folder of its own, with its own config."""
    folder = tmp_path / name
    folder.mkdir()
    shutil.copytree(ws / "campaigns", folder / "campaigns")
    shutil.copytree(ws / "templates", folder / "templates")
    write_config(folder, db_url, port)
    return folder


def _send(folder: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env["NURTURE_NOW"] = TUESDAY_10_JST
    return subprocess.Popen(
        [sys.executable, "-m", "nurture", "send", "--json"],
        cwd=folder,  # each host finds its own nurture.toml in its working folder
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_three_hosts_with_their_own_configs_and_relays_never_send_twice(ws, tmp_path, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("several machines share a PostgreSQL server")
    n = 90
    add_prospects(ws, [f"h{i}@example.com,H{i},Co,{'製造業' if i % 2 else '物流'},warm,opt_in" for i in range(n)])
    relays = [SmtpTestServer() for _ in range(3)]
    for relay in relays:
        relay.start()
    try:
        hosts = [_host(ws, tmp_path, f"host{i}", db_url, relay.port) for i, relay in enumerate(relays)]
        procs = [_send(folder) for folder in hosts]
        outputs = [p.communicate(timeout=180) for p in procs]
    finally:
        for relay in relays:
            relay.stop()
    assert all(p.returncode == 0 for p in procs), outputs
    reports = [json.loads(out) for out, _ in outputs]
    assert sum(r["sent"] for r in reports) == n
    received = Counter(m.rcpt_tos[0] for relay in relays for m in relay.messages)
    assert len(received) == n and set(received.values()) == {1}, "a prospect was mailed twice or not at all"
    # Each relay got exactly what its host's report says it sent: no host sent on another's behalf.
    assert [len(relay.messages) for relay in relays] == [r["sent"] for r in reports]

    cfg = configuration.load(hosts[0] / "nurture.toml")
    with db.engine_for(cfg.database_url).connect() as conn:
        states = dict(conn.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all())
    assert states == {"sent": n}
