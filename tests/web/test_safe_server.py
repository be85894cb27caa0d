"""Issue 12 at the tracking server, over real HTTP (uvicorn on loopback) on both databases: secret rotation, the
opt-out that never dead-ends (/stop and broken /u and /p links), body limits before reading, and signed webhook
bodies that cannot be used answered 4xx."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from webserver import LiveServer, make_config, seed_delivery, seed_prospect

from nurture.compose import links as tracking
from nurture.core import clock
from nurture.deliver.senders import memory
from nurture.store import db
from nurture.store.models import Base, Event, Prospect
from nurture.track.webhooks.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER
from nurture.web import create_app
from nurture.web.limits import FORM_LIMIT

OLD = "old-secret-Kq3v9XbT2mLw8RzN4pYd"
NEW = "new-secret-Hc7sJ2eVx5QnB9tGk4Wu"
PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC = base64.b64encode(
    PRIVATE.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
).decode()


def signed(body: bytes) -> dict[str, str]:
    ts = str(int(clock.now().timestamp()))
    signature = PRIVATE.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: ts}


@contextlib.contextmanager
def serving(engine, db_url, **sections):
    holder = {}

    def factory(base):
        tracking_section = {"secret": NEW, "previous_secrets": [OLD], "base_url": base, **sections.pop("tracking", {})}
        holder["config"] = make_config(
            db_url,
            base,
            tracking=tracking_section,
            delivery={"sender": "memory"},
            identity={"from_address": "news@mail.nurture-test.jp", "from_name": "テスト ニュース"},
            sendgrid={"webhook_public_key": PUBLIC},
            **sections,
        )
        return create_app(holder["config"], engine=engine, jobs=[])

    with LiveServer(factory) as server, httpx.Client(timeout=10) as client:
        yield server, holder["config"], client


@pytest.fixture
def live(engine, db_url):
    memory.clear()
    with serving(engine, db_url) as triple:
        yield triple
    memory.clear()


def unsubscribe_events(engine, pid):
    with engine.connect() as conn:
        return conn.execute(select(Event.id).where(Event.prospect_id == pid, Event.type == "unsubscribed")).all()


def status(engine, pid):
    with engine.connect() as conn:
        return conn.execute(select(Prospect.status).where(Prospect.id == pid)).scalar_one()


def test_rotation_old_links_work_new_ones_use_the_new_secret_forged_fail(live, engine, caplog):
    server, config, client = live
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid)
    # A mail sent before the rotation: its links were signed with the old secret.
    old_unsub = f"{server.url}/u/{tracking.sign(OLD.encode(), tracking.UNSUBSCRIBE, did, pid)}"
    old_click = f"{server.url}/c/{tracking.sign(OLD.encode(), tracking.CLICK, did, 0, 'https://example.org/a')}"
    r = client.get(old_click)
    assert r.status_code == 302 and r.headers["location"] == "https://example.org/a"
    r = client.get(f"{server.url}/p/{tracking.sign(OLD.encode(), tracking.PREFERENCES, did, pid)}")
    assert r.status_code == 200 and 'value="pause:3"' in r.text
    # New links: the new secret only.
    new = tracking.Links(config).for_mail(did, pid)["unsubscribe"].rpartition("/")[2]
    assert tracking.verify(NEW.encode(), tracking.UNSUBSCRIBE, new) == (str(did), str(pid))
    assert tracking.verify(OLD.encode(), tracking.UNSUBSCRIBE, new) is None
    # A forged token (a secret the server never had) still fails, with the opt-out form and a counted warning.
    forged = tracking.sign(b"forged-secret-0123456789abcdef", tracking.UNSUBSCRIBE, did, pid)
    with caplog.at_level(logging.WARNING, logger="nurture.web"):
        r = client.get(f"{server.url}/u/{forged}")
        r2 = client.post(f"{server.url}/p/{forged}x", data={"choice": "pause:3"})
    assert r.status_code == 404 and 'action="/stop"' in r.text and 'name="email"' in r.text
    assert r2.status_code == 404 and 'action="/stop"' in r2.text
    warnings = [rec.getMessage() for rec in caplog.records if "link refused" in rec.getMessage()]
    assert len(warnings) == 2 and "(1 refused since start)" in warnings[0] and forged not in warnings[0]
    assert client.get(server.url + "/healthz").json()["refused_links"] == 2
    assert status(engine, pid) == "active"
    # The old unsubscribe link still unsubscribes; a second one-click POST records no second event.
    assert client.post(old_unsub, content=b"List-Unsubscribe=One-Click").status_code == 200
    assert client.post(old_unsub, content=b"List-Unsubscribe=One-Click").status_code == 200
    assert status(engine, pid) == "unsubscribed" and len(unsubscribe_events(engine, pid)) == 1


def test_previous_secrets_from_the_environment(tmp_path, monkeypatch):
    from nurture.core import config as configuration

    (tmp_path / "nurture.toml").write_text('[tracking]\nprevious_secrets = ["from-file"]\n', encoding="utf-8")
    monkeypatch.setenv("NURTURE_SECRET", NEW)
    monkeypatch.setenv("NURTURE_PREVIOUS_SECRETS", f" {OLD} , second-old-secret-xyz,,{NEW}")
    cfg = configuration.load(tmp_path / "nurture.toml")
    assert cfg.previous_secrets() == (OLD.encode(), b"second-old-secret-xyz")  # blanks and the current one dropped
    monkeypatch.delenv("NURTURE_PREVIOUS_SECRETS")
    assert configuration.load(tmp_path / "nurture.toml").previous_secrets() == (b"from-file",)


def test_broken_link_leads_to_a_confirmation_mail_that_unsubscribes(live, engine):
    server, config, client = live
    pid = seed_prospect(engine, "hanako@example.co.jp", language="ja")
    seed_prospect(engine, "gone@example.co.jp", status="unsubscribed")
    r = client.get(f"{server.url}/u/cut-off-in-the-mail-client")
    assert r.status_code == 404 and "確認できませんでした" in r.text
    # The form's answer is the same for any address; only an active prospect gets a mail.
    answers = [
        client.post(server.url + "/stop", data={"email": email, "lang": "ja"})
        for email in (" Hanako@Example.co.jp ", "nobody@example.co.jp", "gone@example.co.jp")
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert "確認メールをお送りしました" in answers[1].text
    assert [m.message.to_address for m in memory.outbox] == ["hanako@example.co.jp"]
    # A second request within the hour sends nothing more (the form cannot flood an inbox).
    assert client.post(server.url + "/stop", data={"email": "hanako@example.co.jp"}).status_code == 200
    assert len(memory.outbox) == 1
    assert client.post(server.url + "/stop", data={"email": "not an address"}).status_code == 400

    mail = memory.outbox[0].message
    assert "配信停止" in mail.subject and mail.list_unsubscribe["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = mail.list_unsubscribe["List-Unsubscribe"].split(">", 1)[0].lstrip("<")
    assert url in mail.text and url in mail.html
    token = url.rpartition("/")[2]
    assert tracking.verify(NEW.encode(), tracking.UNSUBSCRIBE, token) == ("0", str(pid))  # fresh, current secret
    local = server.url + urlsplit(url).path
    assert "配信を停止する" in client.get(local).text and status(engine, pid) == "active"
    assert client.post(local, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert status(engine, pid) == "unsubscribed"
    # The mail speaks the prospect's language when it is known, whatever the page's.
    seed_prospect(engine, "john@example.com", language="en")
    assert client.post(server.url + "/stop", data={"email": "john@example.com", "lang": "ja"}).status_code == 200
    english = memory.outbox[-1].message
    assert english.to_address == "john@example.com" and "confirm your unsubscribe" in english.subject
    assert "Open the link below" in english.text


def raw_request(server, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``head`` (+ ``body``) on a fresh socket; the status and the bytes answered (the server may answer
    before the body is sent: a 1 GiB body is declared, never sent)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.find(b"\r\n\r\n") + 60:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data


@pytest.mark.parametrize("path", ["/u/anything", "/p/anything", "/stop", "/webhooks/sendgrid"])
def test_declared_huge_bodies_are_refused_unread(live, path):
    server, _, _ = live
    started = time.monotonic()
    code, data = raw_request(
        server,
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {2**30}\r\n\r\n".encode(),
    )
    assert code == 413 and b"request body too large" in data
    assert time.monotonic() - started < 2


def test_chunked_bodies_are_counted_and_stopped(live, engine):
    server, config, client = live
    pid = seed_prospect(engine)
    url = tracking.Links(config).for_mail(0, pid)["unsubscribe"]

    def chunks(total):
        yield b"List-Unsubscribe=One-Click&pad="
        for _ in range(total // 1024):
            yield b"x" * 1024

    r = client.post(url, content=chunks(FORM_LIMIT * 4), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and f"at most {FORM_LIMIT} bytes" in r.text
    assert status(engine, pid) == "active"
    # Under the limit, chunked works as before.
    r = client.post(url, content=chunks(1024), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and status(engine, pid) == "unsubscribed"
    assert raw_request(server, b"POST /stop HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n")[0] == 400


def test_webhook_limit_is_configurable(engine, db_url):
    memory.clear()
    with serving(engine, db_url, tracking={"webhook_max_bytes": 4096}) as (server, _, client):
        body = json.dumps([{"event": "open", "email": "a@example.co.jp", "pad": "x" * 5000}]).encode()
        r = client.post(server.url + "/webhooks/sendgrid", content=body, headers=signed(body))
        assert r.status_code == 413 and "at most 4096 bytes" in r.text
        small = json.dumps([{"event": "open", "email": "a@example.co.jp", "sg_event_id": "e1"}]).encode()
        assert client.post(server.url + "/webhooks/sendgrid", content=small, headers=signed(small)).status_code == 200


def test_signed_webhook_bodies_that_cannot_be_used_are_4xx(live, engine, caplog):
    server, _, client = live
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid)
    post = lambda body: client.post(server.url + "/webhooks/sendgrid", content=body, headers=signed(body))  # noqa: E731
    with caplog.at_level(logging.WARNING):
        deep = post(b"[" * 100_000 + b"]" * 100_000)
        huge_id = post(
            json.dumps(
                [
                    {"event": "open", "email": "taro@example.co.jp", "nurture_delivery_id": 10**30, "sg_event_id": "a"},
                    {"event": "open", "email": "taro@example.co.jp", "nurture_delivery_id": did, "sg_event_id": "b"},
                    {"event": "open", "nurture_delivery_id": "9" * 5000, "sg_event_id": "c"},
                ]
            ).encode()
        )
        odd = post(b'[{"event": {"nested": []}, "timestamp": [1], "url_offset": {"index": {}}}]')
    assert deep.status_code == 400 and "nested too deeply" in deep.text
    assert huge_id.status_code == 200 and huge_id.json()["received"] == 3
    assert odd.status_code < 500
    assert "Traceback" not in caplog.text
    with engine.connect() as conn:
        ids = conn.execute(select(Event.delivery_id).where(Event.type == "opened").order_by(Event.id)).scalars().all()
    assert did in ids and all(i is None or i == did for i in ids)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize(("language", "expected"), [("ja", "確認メールを送る"), ("en", "Send the confirmation mail")])
def test_broken_link_page_in_headless_chromium(tmp_path, language, expected):
    """The page a broken /u link gets, in a real browser in the browser's language (one database: the page reads
    none); the screenshot is kept with NURTURE_ARTIFACTS."""
    url = f"sqlite:///{tmp_path / 'n.db'}"
    engine = db.engine_for(url)
    Base.metadata.create_all(engine)
    shot = tmp_path / f"broken-link-{language}.png"
    profile = tempfile.mkdtemp(prefix="nurture-chromium-")
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-component-update",
        f"--user-data-dir={profile}",
        f"--lang={language}",
        f"--accept-lang={language}",
        "--window-size=800,700",
        "--hide-scrollbars",
    ]
    with LiveServer(lambda base: create_app(make_config(url, base), engine=engine, jobs=[])) as server:
        page = server.url + "/u/WyIxIiwiMSJd.cut-off-by-the-mail-client"
        try:
            subprocess.run([*cmd, f"--screenshot={shot}", page], check=True, capture_output=True, timeout=60)
        finally:
            shutil.rmtree(profile, ignore_errors=True)
        # What the browser was served for its Accept-Language (one browser run per language: they are slow).
        html = httpx.get(page, headers={"Accept-Language": language}).text
    assert shot.exists() and shot.stat().st_size > 5000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert expected in html and f'lang="{language}"' in html and 'action="/stop"' in html
    keep = os.environ.get("NURTURE_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
