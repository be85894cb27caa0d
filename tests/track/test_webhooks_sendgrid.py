"""SendGrid Event Webhook: signatures made with a test ECDSA P-256 key pair, over real HTTP, on both databases."""

from __future__ import annotations

import base64
import json
import random

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select
from webserver import LiveServer, make_config, seed_delivery, seed_prospect

from nurture import track
from nurture.core import clock
from nurture.core.errors import ConfigError
from nurture.store.models import Delivery, Event, Prospect, Suppression, email_hash
from nurture.track.webhooks import WebhookRejected
from nurture.track.webhooks.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, SendgridWebhook, dedup_key
from nurture.web import create_app


def key_pair():
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(der).decode()  # as SendGrid shows the verification key


PRIVATE, PUBLIC = key_pair()


def signed_headers(body: bytes, *, private=PRIVATE, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(clock.now().timestamp()) if timestamp is None else timestamp)
    signature = private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        TIMESTAMP_HEADER: ts,
        "Content-Type": "application/json",
    }


@pytest.fixture
def hook(engine, db_url):
    holder = {}

    def factory(base):
        holder["config"] = make_config(
            db_url, base, sendgrid={"webhook_public_key": PUBLIC, "webhook_max_age_seconds": 300}
        )
        return create_app(holder["config"], engine=engine)

    with LiveServer(factory) as server, httpx.Client(timeout=30) as client:

        def post(events, *, body=None, headers=None):
            raw = body if body is not None else json.dumps(events, ensure_ascii=False).encode()
            return client.post(
                server.url + "/webhooks/sendgrid",
                content=raw,
                headers=headers if headers is not None else signed_headers(raw),
            )

        yield post


def sg_event(event, delivery_id, email, n, **extra):
    """Shaped like SendGrid's documented sample events (Event Webhook reference)."""
    base = {
        "email": email,
        "timestamp": 1763780000 + n,
        "smtp-id": f"<{n}@example.co.jp>",
        "event": event,
        "category": ["mfg-insights"],
        "sg_event_id": f"evt-{event}-{delivery_id}-{n}",
        "sg_message_id": f"msg{delivery_id}.filterdrecv-5645d9c87f-abcd.{n}.0",
        "nurture_delivery_id": str(delivery_id),
    }
    base.update(extra)
    return base


def state(engine):
    """Everything the webhook may change, to compare before/after replays."""
    with engine.connect() as conn:
        return (
            sorted((e.type, e.delivery_id, e.dedup_key, e.label, e.rule) for e in conn.execute(select(Event))),
            sorted((p.id, p.status) for p in conn.execute(select(Prospect.id, Prospect.status))),
            sorted((s.email_hash, s.reason) for s in conn.execute(select(Suppression))),
            sorted((d.id, d.state) for d in conn.execute(select(Delivery.id, Delivery.state))),
        )


def test_a_signed_batch_is_normalised_and_applied(hook, engine):
    people = {
        n: seed_prospect(engine, f"{n}@example.co.jp")
        for n in ("open", "hard", "soft", "spam", "unsub", "group", "drop", "late", "ambig")
    }
    d = {
        n: seed_delivery(engine, pid, state="unknown" if n == "ambig" else "sent", provider_message_id=f"msg{n}")
        for n, pid in people.items()
    }
    batch = [
        sg_event("processed", d["ambig"], "ambig@example.co.jp", 1),
        sg_event("delivered", d["open"], "open@example.co.jp", 2, response="250 OK"),
        sg_event(
            "open", d["open"], "open@example.co.jp", 3, useragent="Mozilla/5.0", ip="17.58.1.2", sg_machine_open=True
        ),
        sg_event(
            "click",
            d["open"],
            "open@example.co.jp",
            4,
            url="https://example.co.jp/a",
            url_offset={"index": 0, "type": "html"},
            useragent="Mozilla/5.0 (Windows NT 10.0) Chrome/131.0",
            ip="198.51.100.7",
        ),
        sg_event(
            "bounce", d["hard"], "hard@example.co.jp", 5, type="bounce", status="5.1.1", reason="550 5.1.1 User unknown"
        ),
        sg_event("bounce", d["soft"], "soft@example.co.jp", 6, type="blocked", status="4.0.0", reason="421 try later"),
        sg_event("spamreport", d["spam"], "spam@example.co.jp", 7),
        sg_event("unsubscribe", d["unsub"], "unsub@example.co.jp", 8),
        sg_event("group_unsubscribe", d["group"], "group@example.co.jp", 9, asm_group_id=10),
        sg_event("dropped", d["drop"], "drop@example.co.jp", 10, reason="Bounced Address", status="5.0.0"),
        sg_event("deferred", d["late"], "late@example.co.jp", 11, response="400 try again later", attempt="3"),
        sg_event("brand_new_event", d["late"], "late@example.co.jp", 12, something={"x": 1}),
    ]
    r = hook(batch)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": 12, "inserted": 12, "duplicates": 0}
    with engine.connect() as conn:
        statuses = dict(conn.execute(select(Prospect.email, Prospect.status)).all())
        rows = {
            e.type if e.type != "bounced" else f"bounced-{e.data['bounce']}": e for e in conn.execute(select(Event))
        }
        ambiguous = conn.execute(select(Delivery.state).where(Delivery.id == d["ambig"])).scalar_one()
    assert {k.split("@")[0]: v for k, v in statuses.items()} == {
        "open": "active",
        "hard": "bounced",
        "soft": "active",
        "spam": "complained",
        "unsub": "unsubscribed",
        "group": "unsubscribed",
        "drop": "bounced",
        "late": "active",
        "ambig": "active",
    }
    assert ambiguous == "sent"
    assert {k for k in rows} >= {
        "sent",
        "delivered",
        "opened",
        "clicked",
        "bounced-hard",
        "bounced-soft",
        "complained",
        "unsubscribed",
        "dropped",
        "deferred",
        "unknown",
    }
    assert (rows["opened"].label, rows["opened"].rule) == ("machine", "sg_machine_open")
    assert rows["clicked"].url == "https://example.co.jp/a" and rows["clicked"].data["link_index"] == 0
    assert rows["unknown"].data["raw"]["event"] == "brand_new_event"
    assert rows["deferred"].prospect_id == people["late"] and rows["deferred"].campaign == "mfg-insights"
    with engine.connect() as conn:
        hashes_ = set(conn.execute(select(Suppression.email_hash)).scalars())
    assert hashes_ == {email_hash(f"{n}@example.co.jp") for n in ("hard", "spam", "unsub", "group", "drop")}


def test_replayed_three_times_in_shuffled_order_changes_nothing(hook, engine):
    pids = [seed_prospect(engine, f"p{i}@example.com") for i in range(5)]
    dids = [seed_delivery(engine, p) for p in pids]
    batch = [
        sg_event(name, did, f"p{i}@example.com", i * 10 + j)
        for i, did in enumerate(dids)
        for j, name in enumerate(("processed", "delivered", "open", "click"))
    ]
    batch += [
        sg_event("unsubscribe", dids[0], "p0@example.com", 99),
        sg_event("bounce", dids[1], "p1@example.com", 98, type="bounce"),
    ]
    # One event without sg_event_id: deduplicated on (sg_message_id, event, timestamp, url).
    batch.append({k: v for k, v in sg_event("open", dids[2], "p2@example.com", 97).items() if k != "sg_event_id"})
    assert hook(batch).json()["inserted"] == len(batch)
    first = state(engine)
    rng = random.Random(5)
    for _ in range(3):
        shuffled = batch[:]
        rng.shuffle(shuffled)
        r = hook(shuffled)
        assert r.status_code == 200 and r.json()["inserted"] == 0 and r.json()["duplicates"] == len(batch)
        assert state(engine) == first


@pytest.mark.parametrize(
    "case",
    [
        "wrong key",
        "malformed base64",
        "not base64 der",
        "missing headers",
        "stale",
        "future",
        "not a number",
        "body changed",
    ],
)
def test_bad_signatures_and_replays_are_refused(hook, engine, case):
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid)
    body = json.dumps([sg_event("unsubscribe", did, "taro@example.co.jp", 1)]).encode()
    headers = signed_headers(body)
    if case == "wrong key":
        headers = signed_headers(body, private=key_pair()[0])
    elif case == "malformed base64":
        headers[SIGNATURE_HEADER] = "not*base64!"  # binascii.Error inside the helper
    elif case == "not base64 der":
        headers[SIGNATURE_HEADER] = base64.b64encode(b"junk").decode()
    elif case == "missing headers":
        headers = {"Content-Type": "application/json"}
    elif case == "stale":
        headers = signed_headers(body, timestamp=int(clock.now().timestamp()) - 301)
    elif case == "future":
        headers = signed_headers(body, timestamp=int(clock.now().timestamp()) + 3600)
    elif case == "not a number":
        headers[TIMESTAMP_HEADER] = "yesterday"
    elif case == "body changed":
        body = body.replace(b"unsubscribe", b"delivered__")
    r = hook(None, body=body, headers=headers)
    assert r.status_code == 403
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Event)).scalar_one() == 0
        assert conn.execute(select(Prospect.status).where(Prospect.id == pid)).scalar_one() == "active"


def test_a_fresh_timestamp_within_the_window_is_accepted(hook, engine):
    body = json.dumps([sg_event("delivered", 999, "x@example.com", 1)]).encode()
    r = hook(None, body=body, headers=signed_headers(body, timestamp=int(clock.now().timestamp()) - 250))
    assert r.status_code == 200


@pytest.mark.parametrize("body", [b"{not json", b'{"event": "open"}', b"[1, 2]"])
def test_signed_but_malformed_bodies_get_400(hook, body):
    assert hook(None, body=body, headers=signed_headers(body)).status_code == 400


def test_without_a_configured_key_every_batch_is_refused(engine, db_url):
    with LiveServer(lambda base: create_app(make_config(db_url, base), engine=engine)) as server:
        body = b"[]"
        r = httpx.post(server.url + "/webhooks/sendgrid", content=body, headers=signed_headers(body))
        assert r.status_code == 403 and "webhook_public_key" in r.text


def test_a_bad_configured_key_is_a_config_error():
    with pytest.raises(ConfigError, match="webhook_public_key"):
        SendgridWebhook("bm90IGEga2V5")


# --------------------------------------------------------------------------------------------- pure mapping


def test_normalise_mapping_table():
    hook = SendgridWebhook(PUBLIC)
    n = hook.normalise
    assert n({"event": "processed", "timestamp": 1}).type == track.SENT
    assert n({"event": "bounce", "type": "blocked"}).data["bounce"] == "soft"
    assert n({"event": "bounce", "type": "bounce"}).data["bounce"] == "hard"
    assert n({"event": "dropped", "reason": "Spam Reporting Address"}).data["suppress"] == "complained"
    assert n({"event": "dropped", "reason": "Invalid SMTPAPI header"}).data["suppress"] == ""
    assert n({"event": "dropped", "reason": "Something new"}).data["suppress"] == "bounced"
    assert n({"event": "group_resubscribe"}).type == track.UNKNOWN
    e = n({"event": "open", "sg_message_id": "abc.def.ghi", "nurture_delivery_id": "12", "timestamp": 1763780000})
    assert (e.provider_message_id, e.delivery_id, e.occurred_at.year) == ("abc", 12, 2025)
    assert n({"event": "open", "nurture_delivery_id": "x"}).delivery_id is None


def test_dedup_keys():
    assert dedup_key({"sg_event_id": "abc"}) == "sendgrid:abc"
    a = dedup_key({"sg_message_id": "m", "event": "click", "timestamp": 1, "url": "https://a/"})
    b = dedup_key({"sg_message_id": "m", "event": "click", "timestamp": 1, "url": "https://b/"})
    assert a != b and a.startswith("sendgrid:h:")


def test_missing_hooks_name_the_class():
    from nurture.track.webhooks.base import Webhook

    class Half(Webhook):
        pass

    with pytest.raises(NotImplementedError, match=r"Half\.verify"):
        Half().events({}, b"")
    with pytest.raises(WebhookRejected):
        SendgridWebhook("").verify({}, b"")
