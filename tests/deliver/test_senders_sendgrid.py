"""SendgridSender: the official client against a local HTTP server answering like SendGrid's v3 API."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from servers import free_port

from nurture.compose.message import OutgoingMessage
from nurture.core import clock
from nurture.core import config as config_mod
from nurture.core.errors import (
    AmbiguousSendError,
    ConfigError,
    HeaderInjectionError,
    PermanentSendError,
    SenderConfigError,
    TemporarySendError,
)
from nurture.deliver.senders import make_sender
from nurture.deliver.senders.sendgrid import SendgridSender

UNSUB = {
    "List-Unsubscribe": "<https://n.example.co.jp/u/tok>, <mailto:u@example.co.jp?subject=tok>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def make(i: int = 42, **kw) -> OutgoingMessage:
    base = dict(
        delivery_id=i,
        campaign="mfg-insights",
        to_address="taro@example.com",
        to_name="山田 太郎",
        from_address="news@example.co.jp",
        from_name="サンプル通信",
        reply_to="info@example.co.jp",
        subject="今月の製造業トピックス",
        html="<p>本文</p>",
        text="本文",
        list_unsubscribe=dict(UNSUB),
    )
    base.update(kw)
    return OutgoingMessage(**base)


@pytest.fixture
def sender(sendgrid_server):
    return SendgridSender("SG.test-key", host=sendgrid_server.url, timeout=2)


def test_202_returns_x_message_id_and_posts_the_v3_payload(sender, sendgrid_server):
    result = sender.send(make())
    assert result.provider_message_id == sendgrid_server.message_ids[0]
    (req,) = sendgrid_server.requests
    assert req.method == "POST" and req.path == "/v3/mail/send"
    assert req.headers["Authorization"] == "Bearer SG.test-key"
    body = req.json
    assert body["personalizations"] == [{"to": [{"email": "taro@example.com", "name": "山田 太郎"}]}]
    assert body["from"] == {"email": "news@example.co.jp", "name": "サンプル通信"}
    assert body["reply_to"] == {"email": "info@example.co.jp"}
    assert body["subject"] == "今月の製造業トピックス"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["custom_args"] == {"nurture_delivery_id": "42"}  # our id only: no PII
    assert body["categories"] == ["mfg-insights"]
    assert body["headers"] == {"List-Id": "<mfg-insights.example.co.jp>", **UNSUB}
    assert body["mail_settings"] == {"sandbox_mode": {"enable": False}}
    assert body["tracking_settings"]["click_tracking"]["enable"] is False


def test_sandbox_mode_from_config(tmp_path, sendgrid_server, monkeypatch):
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.from-env")
    (tmp_path / "nurture.toml").write_text(
        f'[delivery]\nsender = "sendgrid"\n[sendgrid]\nhost = "{sendgrid_server.url}"\nsandbox = true\ntimeout = 3\n',
        encoding="utf-8",
    )
    sender = make_sender(config_mod.load(tmp_path / "nurture.toml"))
    assert isinstance(sender, SendgridSender) and sender.timeout == 3
    sender.send(make())
    (req,) = sendgrid_server.requests
    assert req.json["mail_settings"]["sandbox_mode"]["enable"] is True
    assert req.headers["Authorization"] == "Bearer SG.from-env"


def test_missing_api_key_is_a_config_error(monkeypatch):
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY"):
        SendgridSender("")


@pytest.mark.parametrize(
    "status,message",
    [
        (400, "The from address does not match a verified Sender Identity."),
        (413, "The JSON payload you have included in your request is too large."),
    ],
)
def test_4xx_are_permanent_with_sendgrids_words(sender, sendgrid_server, status, message):
    sendgrid_server.answer_error(status, message, field_name="from.email" if status == 400 else None)
    with pytest.raises(PermanentSendError) as err:
        sender.send(make())
    assert err.value.code == status and message in str(err.value)
    assert err.value.hard_bounce is False
    if status == 400:
        assert "from.email: " in str(err.value)


@pytest.mark.parametrize(
    "status,message",
    [
        (401, "The provided authorization grant is invalid, expired, or revoked"),
        (403, "access forbidden"),
    ],
)
def test_a_refused_api_key_is_the_senders_failure_not_the_messages(sender, sendgrid_server, status, message):
    """401/403 would refuse every message alike: SenderConfigError, on which the engine stops the run."""
    sendgrid_server.answer_error(status, message)
    with pytest.raises(SenderConfigError) as err:
        sender.send(make())
    assert err.value.code == status and message in str(err.value)
    assert "SENDGRID_API_KEY" in str(err.value)  # the hint


def test_429_is_temporary_with_retry_after_from_the_reset_header(sender, sendgrid_server):
    now = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
    sendgrid_server.answer_rate_limited(int(now.timestamp()) + 42)
    with clock.frozen(now), pytest.raises(TemporarySendError) as err:
        sender.send(make())
    assert err.value.code == 429 and err.value.retry_after == pytest.approx(42)
    assert sender.send(make()).provider_message_id  # then it goes through


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_temporary(sender, sendgrid_server, status):
    sendgrid_server.answer_error(status, "internal error")
    with pytest.raises(TemporarySendError, match="internal error") as err:
        sender.send(make())
    assert err.value.code == status and err.value.retry_after is None


def test_slow_answer_is_ambiguous_within_the_timeout(sendgrid_server):
    sender = SendgridSender("SG.k", host=sendgrid_server.url, timeout=0.5)
    sendgrid_server.answer_slowly(2.0)
    start = time.monotonic()
    with pytest.raises(AmbiguousSendError, match="may have been accepted"):
        sender.send(make())
    assert time.monotonic() - start < 1.5  # the explicit timeout, not the server's pace
    assert len(sendgrid_server.requests) == 1  # the request did reach SendGrid


def test_connection_refused_is_temporary():
    sender = SendgridSender("SG.k", host=f"http://127.0.0.1:{free_port()}", timeout=1)
    with pytest.raises(TemporarySendError, match="request not sent"):
        sender.send(make())


def test_non_json_error_body_is_reported_raw(sender, sendgrid_server):
    sendgrid_server.answer(400, b"<html>Bad gateway config</html>")
    with pytest.raises(PermanentSendError, match="Bad gateway config"):
        sender.send(make())


def test_header_injection_is_refused_before_any_request(sender, sendgrid_server):
    with pytest.raises(HeaderInjectionError):
        sender.send(make(subject="hi\r\nBcc: x@example.com"))
    assert sendgrid_server.requests == []
