"""Issue 13 over real HTTP (uvicorn on loopback) and real SMTP (aiosmtpd), on both databases: the sign-up form,
double opt-in (expired, reused and forged links), topics honoured by segment selection and changed on the
preferences page, consent records, and the limits against abuse."""

from __future__ import annotations

import contextlib
import email
import email.policy
import re
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert, select
from webserver import LiveServer, make_config, seed_prospect

from nurture.compose import links as tracking
from nurture.core import clock
from nurture.people.consent import consent_of
from nurture.people.signup import purge_pending
from nurture.plan.campaigns import load_campaign
from nurture.plan.segments import segment_select
from nurture.store.models import ConsentRecord, Event, PendingSubscription, Prospect, ProspectTopic, Suppression
from nurture.store.models import email_hash as hash_of
from nurture.web import create_app
from nurture.web.subscribe import wording_digest

CAMPAIGN = """\
name = "{name}"
language = "ja"
topic = "{topic}"
[content]
[[content.items]]
key = "first"
subject = "件名"
template = "t.mjml"
"""
TEMPLATE = "<mjml><mj-body><mj-section><mj-column><mj-text>Hello</mj-text></mj-column></mj-section></mj-body></mjml>"


def workspace(tmp_path: Path) -> Path:
    """A folder with two campaigns on two topics (what the form offers)."""
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.mjml").write_text(TEMPLATE, encoding="utf-8")
    for name, topic in (("dx-news", "製造業DX"), ("seminars", "セミナー案内")):
        (tmp_path / "campaigns" / f"{name}.toml").write_text(CAMPAIGN.format(name=name, topic=topic), encoding="utf-8")
    return tmp_path


@contextlib.contextmanager
def serving(engine, db_url, root, smtp_server, **subscribe):
    holder = {}

    def factory(base):
        holder["config"] = make_config(
            db_url,
            base,
            root=root,
            delivery={"sender": "smtp", "preflight": False},
            smtp={"host": smtp_server.host, "port": smtp_server.port},
            identity={
                "organization": "株式会社テスト",
                "from_address": "news@mail.nurture-test.jp",
                "from_name": "テスト ニュース",
                "postal_address": "〒100-0001 東京都千代田区1-1",
                "inquiry": "info@nurture-test.jp",
            },
            subscribe={"enabled": True, "min_fill_seconds": 0, "industries": ["製造業", "建設業"], **subscribe},
        )
        return create_app(holder["config"], engine=engine, jobs=[])

    with LiveServer(factory) as server, httpx.Client(timeout=10) as client:
        yield server, holder["config"], client


def form_token(client, server, lang="ja") -> str:
    page = client.get(f"{server.url}/subscribe?lang={lang}").text
    return re.search(r'name="token" value="([^"]+)"', page).group(1)


def sign_up(client, server, address, *, lang="ja", topics=("製造業DX",), text="", headers=None, **extra):
    fields = {
        "email": address,
        "name": "山田 太郎",
        "company": "山田製作所",
        "title": "部長",
        "industry": "製造業",
        "topic": list(topics),
        "text": text,
        "consent": "yes",
        "lang": lang,
        "token": form_token(client, server, lang),
        "website": "",
        **extra,
    }
    return client.post(
        f"{server.url}/subscribe", data=fields, headers={"User-Agent": "TestBrowser/1.0", **(headers or {})}
    )


def confirm_link(message_bytes: bytes) -> str:
    msg = email.message_from_bytes(message_bytes, policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content()
    return re.search(r"(http://\S+/s/\S+)", text).group(1)


def test_double_opt_in_over_http_and_smtp(engine, db_url, tmp_path, smtp_server):
    """Sign up, the mail arrives at the SMTP server in Japanese with the legal footer, the GET page only shows a
    button, the POST confirms exactly the topics chosen with a consent record and the signed_up / inquired events;
    the link then works no more; a forged one is 404."""
    root = workspace(tmp_path)
    with serving(engine, db_url, root, smtp_server) as (server, config, client):
        answer = sign_up(client, server, "Hanako@Example.JP", text="見積もりの相談をしたい")
        assert answer.status_code == 200 and "確認メールをお送りしました" in answer.text
        assert len(smtp_server.messages) == 1
        mail = email.message_from_bytes(smtp_server.messages[0].data, policy=email.policy.default)
        assert mail["To"] == "hanako@example.jp" and "ご登録の確認" in mail["Subject"]
        body = mail.get_body(("plain",)).get_content()
        assert "〒100-0001" in body and "info@nurture-test.jp" in body and "製造業DX" in body
        link = confirm_link(smtp_server.messages[0].data)
        with engine.connect() as conn:
            assert conn.execute(select(Prospect.id)).first() is None  # nothing active before the click
        page = client.get(link)
        assert page.status_code == 200 and "登録を確定する" in page.text and "h***@example.jp" in page.text
        with engine.connect() as conn:
            assert conn.execute(select(Prospect.id)).first() is None  # a GET never confirms (mail scanners)
        done = client.post(link, data={"confirm": "yes"})
        assert done.status_code == 200 and "ご登録ありがとうございます" in done.text
        with engine.connect() as conn:
            p = conn.execute(select(Prospect).where(Prospect.email == "hanako@example.jp")).one()
            topics = dict(conn.execute(select(ProspectTopic.topic, ProspectTopic.subscribed)).all())
            record = conn.execute(select(ConsentRecord)).one()
            events = conn.execute(select(Event.type, Event.data).where(Event.prospect_id == p.id)).all()
        assert (p.status, p.consent_basis, p.consent_source, p.name, p.industry, p.language) == (
            "active",
            "opt_in",
            "form:site",
            "山田 太郎",
            "製造業",
            "ja",
        )
        assert topics == {"製造業DX": True, "セミナー案内": False}  # exactly the topics chosen
        assert record.basis == "opt_in" and record.source == "site" and record.ip == "127.0.0.1"
        assert record.user_agent == "TestBrowser/1.0" and record.wording == config.subscribe.consent_wording["ja"]
        assert record.confirmed_at is not None and record.topics == ["製造業DX"]
        assert sorted(e.type for e in events) == ["inquired", "signed_up"]
        assert next(e.data for e in events if e.type == "inquired")["text"] == "見積もりの相談をしたい"
        # Reused: the same link changes nothing more.
        again = client.post(link, data={"confirm": "yes"})
        assert again.status_code == 200 and "すでに確定" in again.text
        with engine.connect() as conn:
            assert len(conn.execute(select(Event.id)).all()) == 2
            assert len(conn.execute(select(ConsentRecord.id)).all()) == 1
        # Forged: another id with the same signature, or a token made with another key.
        token = link.rpartition("/")[2]
        forged = tracking.sign(b"not-the-secret-at-all-000000", tracking.CONFIRM, "1", "x")
        assert client.get(f"{server.url}/s/{forged}").status_code == 404
        assert client.post(f"{server.url}/s/{forged}", data={"confirm": "yes"}).status_code == 404
        payload, mac = token.split(".")
        assert client.post(f"{server.url}/s/{payload[:-2]}AA.{mac}", data={"confirm": "yes"}).status_code == 404
        # A form token is worthless as a confirmation token (the MAC covers the purpose).
        assert client.get(f"{server.url}/s/{form_token(client, server)}").status_code == 404
    shown = consent_of(engine, "HANAKO@example.jp")
    assert shown["basis"] == "opt_in" and shown["records"][0]["ip"] == "127.0.0.1"


def test_expired_link_and_no_enumeration(engine, db_url, tmp_path, smtp_server):
    """An expired link confirms nothing (410, a way to sign up again); an active address gets the same page and
    no mail; a repeated sign-up re-sends only after resend_minutes; a suppressed address stays suppressed until
    the click."""
    root = workspace(tmp_path)
    start = clock.now()
    with clock.frozen(start), serving(engine, db_url, root, smtp_server, resend_minutes=10) as (server, _c, client):
        seed_prospect(engine, "known@example.jp", consent_basis="business_card")
        with engine.begin() as conn:
            conn.execute(
                insert(Suppression).values(
                    email_hash=hash_of("gone@example.jp"), reason="unsubscribed", source="t", created_at=start
                )
            )
        known = sign_up(client, server, "known@example.jp")
        fresh = sign_up(client, server, "new@example.jp")
        assert known.status_code == fresh.status_code == 200
        assert known.text.replace("known@", "X@") == fresh.text.replace("new@", "X@")  # no enumeration
        assert [m.rcpt_tos for m in smtp_server.messages] == [["new@example.jp"]]
        sign_up(client, server, "new@example.jp")  # at once again: no second mail
        assert len(smtp_server.messages) == 1
        sign_up(client, server, "gone@example.jp")
        assert len(smtp_server.messages) == 2
        with engine.connect() as conn:
            assert conn.execute(select(Suppression.reason)).scalars().all() == ["unsubscribed"]
        with clock.frozen(start + timedelta(minutes=11)):
            sign_up(client, server, "new@example.jp")
            assert len(smtp_server.messages) == 3
            # The re-sent mail carries the same link (still valid): the first mail's link works too.
            assert confirm_link(smtp_server.messages[2].data) == confirm_link(smtp_server.messages[0].data)
        link = confirm_link(smtp_server.messages[1].data)
        with clock.frozen(start + timedelta(hours=49)):
            page = client.get(link)
            assert page.status_code == 410 and "有効期限" in page.text and "/subscribe" in page.text
            assert client.post(link, data={"confirm": "yes"}).status_code == 410
        with engine.connect() as conn:
            assert conn.execute(select(Prospect.status).where(Prospect.email == "gone@example.jp")).first() is None
            assert len(conn.execute(select(Suppression.reason)).all()) == 1
        with clock.frozen(start + timedelta(hours=1)):
            assert client.post(link, data={"confirm": "yes"}).status_code == 200  # the click un-suppresses
        with engine.connect() as conn:
            assert conn.execute(select(Suppression.reason)).first() is None
    with clock.frozen(start + timedelta(days=60)):
        assert purge_pending(engine) == 2  # unconfirmed addresses are not kept for ever


def test_abuse_guards(engine, db_url, tmp_path, smtp_server):
    """Honeypot and too-fast forms keep nothing and send nothing but look the same; a form without a token is
    shown again filled in; a foreign Origin is 403; the per-IP limit answers 429; bodies are bounded."""
    root = workspace(tmp_path)
    start = clock.now()
    with (
        clock.frozen(start),
        serving(engine, db_url, root, smtp_server, min_fill_seconds=3, per_ip_per_hour=4) as (server, _c, client),
    ):
        token = form_token(client, server)
        with clock.frozen(start + timedelta(seconds=1)):
            fast = sign_up(client, server, "a@example.jp", token=token)
        assert fast.status_code == 200 and "確認メール" in fast.text
        with clock.frozen(start + timedelta(seconds=10)):
            bot = sign_up(client, server, "b@example.jp", website="http://spam", token=token)
            assert bot.status_code == 200
            assert smtp_server.messages == []
            without = sign_up(client, server, "c@example.jp", token="")
            assert (
                without.status_code == 400 and 'value="c@example.jp"' in without.text and "山田製作所" in without.text
            )
            foreign = sign_up(client, server, "d@example.jp", token=token, headers={"Origin": "https://evil.test"})
            assert foreign.status_code == 403
            stale = sign_up(client, server, "e@example.jp", token=token, shown="0123456789abcdef")
            assert stale.status_code == 400 and smtp_server.messages == []  # wording changed since the snippet
            ok = sign_up(
                client,
                server,
                "e@example.jp",
                token=token,
                headers={"Origin": server.url},
                shown=wording_digest(_c.subscribe.consent_wording["ja"]),
            )
            assert ok.status_code == 200 and len(smtp_server.messages) == 1
            limited = [sign_up(client, server, f"f{i}@example.jp", token=token).status_code for i in range(4)]
            assert limited[-1] == 429 and len(smtp_server.messages) == 3
            big = client.post(f"{server.url}/subscribe", content=b"x" * 40_000, headers={"Content-Type": "text/plain"})
            assert big.status_code == 413
        with engine.connect() as conn:
            kept = conn.execute(select(PendingSubscription.email).order_by(PendingSubscription.email)).scalars().all()
        assert kept == ["e@example.jp", "f0@example.jp", "f1@example.jp"]


def test_topics_in_segments_and_on_the_preferences_page(engine, db_url, tmp_path, smtp_server):
    """A campaign's topic goes to those who chose it and to those who never chose; unsubscribing from one topic on
    the preferences page keeps the others."""
    root = workspace(tmp_path)
    with serving(engine, db_url, root, smtp_server) as (server, config, client):
        sign_up(client, server, "t@example.jp", topics=("製造業DX",))
        client.post(confirm_link(smtp_server.messages[0].data), data={"confirm": "yes"})
        chooser = seed_prospect(engine, "never@example.jp", consent_basis="business_card")
        dx = load_campaign(root / "campaigns" / "dx-news.toml", config)
        seminars = load_campaign(root / "campaigns" / "seminars.toml", config)
        assert dx.topic == "製造業DX" and dx.segment.topic == "製造業DX"

        def members(campaign):
            with engine.connect() as conn:
                ids = conn.execute(segment_select(campaign, clock.now())).scalars().all()
                return set(conn.execute(select(Prospect.email).where(Prospect.id.in_(ids))).scalars())

        assert members(dx) == {"t@example.jp", "never@example.jp"}
        assert members(seminars) == {"never@example.jp"}
        with engine.connect() as conn:
            pid = conn.execute(select(Prospect.id).where(Prospect.email == "t@example.jp")).scalar_one()
        prefs = tracking.urls_for(config, 0, pid)["preferences"]
        page = client.get(prefs)
        assert "製造業DX" in page.text and "セミナー案内" in page.text
        client.post(prefs, data={"choice": "topic-on:セミナー案内"})
        assert members(seminars) == {"never@example.jp", "t@example.jp"}
        client.post(prefs, data={"choice": "topic-off:製造業DX"})
        assert members(dx) == {"never@example.jp"} and "t@example.jp" in members(seminars)
        with engine.connect() as conn:
            assert conn.execute(select(Prospect.status).where(Prospect.id == pid)).scalar_one() == "active"
        assert chooser
