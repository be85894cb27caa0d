"""SmtpSender against a real aiosmtpd server: bytes on the wire, failure classes, reuse, TLS and AUTH."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import warnings

import pytest
from servers import SmtpTestServer

from nurture.compose.message import OutgoingMessage
from nurture.core.errors import AmbiguousSendError, PermanentSendError, SenderConfigError, TemporarySendError
from nurture.deliver.senders import make_sender
from nurture.deliver.senders.smtp import SmtpSender, is_hard_bounce


@pytest.fixture(params=[False, True], ids=["plain", "pipelining"])
def smtp_server(request):
    """Every sender test runs twice: one command per round trip, and RFC 2920 pipelining (what Postfix and most
    real servers offer), where MAIL/RCPT/DATA go in one write and their replies are read in order."""
    with SmtpTestServer(pipelining=request.param) as server:
        yield server


SUBJECT = "株式会社テスト様へ：今月の製造業トピックス 2026年11月号 — 最新動向のまとめと今後の展望"

warnings.filterwarnings("ignore", message="Session.login_data is deprecated")


def make(i: int = 1, to: str = "taro@example.com", **kw) -> OutgoingMessage:
    return OutgoingMessage(
        delivery_id=i,
        campaign="mfg-insights",
        to_address=to,
        to_name="山田 太郎",
        from_address="news@example.co.jp",
        from_name="サンプル通信",
        subject=SUBJECT,
        html="<p>本文</p>\n.\n<p>.leading dot</p>",
        text="本文\n.\n.leading dot",
        list_unsubscribe={
            "List-Unsubscribe": "<https://n.example.co.jp/u/t>, <mailto:u@example.co.jp>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        **kw,
    )


@pytest.fixture
def sender(smtp_server):
    s = SmtpSender(smtp_server.host, smtp_server.port, timeout=2, messages_per_connection=3)
    yield s
    s.close()


def test_delivers_the_exact_bytes_with_headers_once(sender, smtp_server):
    result = sender.send(make())
    (got,) = smtp_server.messages
    assert got.mail_from == "news@example.co.jp" and got.rcpt_tos == ["taro@example.com"]
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post"):
        assert len(msg.get_all(name)) == 1, name
    assert msg["Subject"] == SUBJECT
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["To"].addresses[0].display_name == "山田 太郎"
    # Dot-stuffing (RFC 5321 4.5.2) was undone by the server: the text part survives lines of "." intact.
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.rstrip("\n") == "本文\n.\n.leading dot"
    assert result.provider_message_id == msg["Message-ID"]
    assert "queued as" in result.detail


def test_connection_reuse_and_reconnect_after_n_messages(sender, smtp_server):
    for i in range(7):
        sender.send(make(i))
    assert len(smtp_server.messages) == 7
    assert smtp_server.connections == 3  # 3 + 3 + 1 messages per connection
    assert sender.connections_opened == 3


@pytest.mark.parametrize(
    "code,text",
    [
        (421, "4.7.0 Too many messages, slow down"),
        (450, "4.2.1 Mailbox busy"),
        (451, "4.3.0 Try again later"),
        (452, "4.3.1 Insufficient storage"),
    ],
)
def test_4xx_after_data_is_temporary_then_succeeds_on_retry(sender, smtp_server, code, text):
    smtp_server.fail_next(1, code, text)
    with pytest.raises(TemporarySendError) as err:
        sender.send(make())
    assert err.value.code == code and text in str(err.value)
    assert smtp_server.messages == []
    sender.send(make())  # the retry of the same delivery goes through
    assert len(smtp_server.messages) == 1


def test_4xx_at_rcpt_is_temporary(sender, smtp_server):
    smtp_server.reject_recipient("grey@example.com", 450, "4.7.1 Greylisted, come back later")
    with pytest.raises(TemporarySendError, match="Greylisted"):
        sender.send(make(to="grey@example.com"))
    sender.send(make(to="taro@example.com"))  # the connection is still usable (RSET)
    assert len(smtp_server.messages) == 1 and smtp_server.connections == 1


@pytest.mark.parametrize(
    "code,text,hard",
    [
        (550, "5.1.1 <gone@example.com>: Recipient address rejected: User unknown", True),
        (551, "User not local; please try <x@example.org>", True),
        (553, "Requested action not taken: mailbox name not allowed", True),
        (550, "5.7.1 Message rejected as spam", False),
        (552, "5.2.2 Mailbox full", False),
        (554, "5.7.1 Relay access denied", False),
    ],
)
def test_5xx_at_rcpt_is_permanent_with_the_servers_words(sender, smtp_server, code, text, hard):
    smtp_server.reject_recipient("gone@example.com", code, text)
    with pytest.raises(PermanentSendError) as err:
        sender.send(make(to="gone@example.com"))
    assert err.value.code == code
    assert text in str(err.value)
    assert err.value.hard_bounce is hard


def test_5xx_after_data_is_permanent(sender, smtp_server):
    smtp_server.fail_next(1, 554, "5.6.0 Message content rejected")
    with pytest.raises(PermanentSendError, match="content rejected") as err:
        sender.send(make())
    assert err.value.hard_bounce is False
    sender.send(make(2))
    assert len(smtp_server.messages) == 1


def test_timeout_after_the_dot_is_ambiguous(smtp_server):
    sender = SmtpSender(smtp_server.host, smtp_server.port, timeout=0.5)
    smtp_server.stall_next(1, 1.5)
    with pytest.raises(AmbiguousSendError, match="may have been delivered"):
        sender.send(make())
    assert len(smtp_server.stalled) == 1  # the server did receive the whole message
    sender.send(make(2))  # and the sender recovers on a new connection
    sender.close()
    assert len(smtp_server.messages) == 1


def test_disconnect_after_the_dot_is_ambiguous(sender, smtp_server):
    smtp_server.disconnect_next(1, at="data")
    with pytest.raises(AmbiguousSendError):
        sender.send(make())


def test_disconnect_before_data_is_temporary_and_never_lost(sender, smtp_server):
    sender.send(make(1))
    smtp_server.disconnect_next(1, at="rcpt")
    with pytest.raises(TemporarySendError, match="RCPT"):
        sender.send(make(2))
    sender.send(make(2))
    assert [m.rcpt_tos for m in smtp_server.messages] == [["taro@example.com"]] * 2
    assert smtp_server.connections == 2


def test_reconnects_when_the_server_dropped_an_idle_connection():
    with SmtpTestServer(idle_timeout=0.3) as server:
        sender = SmtpSender(server.host, server.port, timeout=2)
        sender.send(make(1))
        import time

        time.sleep(0.8)  # the server hangs up on the idle session
        sender.send(make(2))  # transparently reconnected: no error, nothing lost
        sender.close()
        assert len(server.messages) == 2 and server.connections == 2


def test_connection_refused_is_temporary():
    from servers import free_port

    sender = SmtpSender("127.0.0.1", free_port(), timeout=1)
    with pytest.raises(TemporarySendError, match="cannot connect"):
        sender.send(make())


def test_starttls_with_auth():
    with SmtpTestServer(tls="starttls", auth={"mailer": "s3cret"}) as server:
        sender = SmtpSender(
            server.host,
            server.port,
            security="starttls",
            username="mailer",
            password="s3cret",
            timeout=2,
            ssl_context=server.client_context,
        )
        sender.send(make())
        sender.close()
        assert server.logins == ["mailer"] and len(server.messages) == 1
        wrong = SmtpSender(
            server.host,
            server.port,
            security="starttls",
            username="mailer",
            password="nope",
            timeout=2,
            ssl_context=server.client_context,
        )
        with pytest.raises(SenderConfigError, match="refused the login") as err:
            wrong.send(make())
        assert err.value.code == 535 and "NURTURE_SMTP_PASSWORD" in str(err.value)


@pytest.mark.parametrize("security", ["none", "starttls"])
def test_530_to_mail_is_the_senders_failure(security):
    """A server that wants a login (RFC 4954 6) or STARTTLS (RFC 3207 4) first answers 530 to MAIL FROM for
    every message: SenderConfigError (the engine stops the run), not one failed mail after another."""
    with SmtpTestServer(tls="starttls", auth={"mailer": "s3cret"}) as server:
        sender = SmtpSender(server.host, server.port, security=security, timeout=2, ssl_context=server.client_context)
        with pytest.raises(SenderConfigError, match="530") as err:
            sender.send(make())
        sender.close()
        assert err.value.code == 530 and "[smtp]" in str(err.value)  # the hint says what to set
        assert server.messages == []


def test_starttls_verifies_the_certificate():
    with SmtpTestServer(tls="starttls") as server:
        sender = SmtpSender(server.host, server.port, security="starttls", timeout=2)  # default CA store
        with pytest.raises(SenderConfigError, match="TLS failed"):
            sender.send(make())


def test_starttls_required_but_not_offered(smtp_server):
    sender = SmtpSender(smtp_server.host, smtp_server.port, security="starttls", timeout=2)
    with pytest.raises(SenderConfigError, match="STARTTLS"):
        sender.send(make())


def test_implicit_tls():
    with SmtpTestServer(tls="ssl") as server:
        sender = SmtpSender(server.host, server.port, security="ssl", timeout=2, ssl_context=server.client_context)
        sender.send(make())
        sender.close()
        assert len(server.messages) == 1


def test_make_sender_from_config(tmp_path, smtp_server):
    from nurture.core import config as config_mod

    (tmp_path / "nurture.toml").write_text(
        f'[delivery]\nsender = "smtp"\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_server.port}\n'
        "messages_per_connection = 2\ntimeout = 5\n",
        encoding="utf-8",
    )
    sender = make_sender(config_mod.load(tmp_path / "nurture.toml"))
    assert isinstance(sender, SmtpSender) and sender.name == "smtp"
    with sender:
        for i in range(3):
            sender.send(make(i))
    assert len(smtp_server.messages) == 3 and smtp_server.connections == 2


@pytest.mark.parametrize(
    "code,text,hard",
    [
        (550, b"5.1.1 User unknown", True),
        (550, b"Mailbox unavailable", True),
        (550, b"5.7.1 Spam", False),
        (553, b"", True),
        (554, b"Transaction failed", False),
        (552, b"5.2.1 Mailbox disabled", True),
        (450, b"4.1.1 later", False),
    ],
)
def test_hard_bounce_rule(code, text, hard):
    assert is_hard_bounce(code, text) is hard


def test_dkim_signed_mail_verifies_as_received(smtp_server, rsa_key):
    import dkim

    from nurture.compose.message import DkimKey

    pem, record = rsa_key
    sender = SmtpSender(smtp_server.host, smtp_server.port, timeout=2, dkim=DkimKey("example.co.jp", "s2026", pem))
    sender.send(make())
    sender.close()
    (got,) = smtp_server.messages
    assert dkim.verify(
        got.data, dnsfunc=lambda name, timeout=5: record if name == b"s2026._domainkey.example.co.jp." else None
    )


def test_dot_stuffing_of_a_7bit_part(sender, smtp_server):
    """An English (7bit) text part puts lines starting with "." on the wire as they are: the sender must double
    each leading dot (RFC 5321 4.5.2) and the server undo it, so the text arrives exactly, "." lines included."""
    text = ".\n..\n.leading dot\nmiddle . dot\n...\nlast."
    sender.send(dataclasses.replace(make(), text=text, html="<p>plain ascii</p>\n.\n<p>.x</p>"))
    (got,) = smtp_server.messages
    assert b"\r\n.leading dot" in got.data  # 7bit on the wire, so stuffing really happened
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n") == text
    html = msg.get_body(("html",)).get_content()
    assert html.replace("\r\n", "\n").rstrip("\n") == "<p>plain ascii</p>\n.\n<p>.x</p>"


def test_body_stuffs_a_leading_dot_of_the_whole_data(smtp_server):
    """The dot-stuffing itself, on data whose very first line starts with "." (build_mime never makes such data,
    but the SMTP layer must not depend on that)."""
    s = SmtpSender(smtp_server.host, smtp_server.port, timeout=2)
    try:
        s.open()
        conn = s._conn
        conn.mail("news@example.co.jp")
        conn.rcpt("taro@example.com")
        code, _ = conn.data(b".first\r\n..second\r\nthird\r\n.")
        assert code == 250
    finally:
        s.close()
    (got,) = smtp_server.messages
    assert got.data.replace(b"\r\n", b"\n").rstrip(b"\n") == b".first\n..second\nthird\n."
