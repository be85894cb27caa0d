"""MemorySender (``sender = "memory"``): the test sender shipped with the library, on its own and under
`nurture send`, including the failures a test can script."""

from __future__ import annotations

import email
import email.policy
import threading

import pytest
from send_workspace import add_prospects, at, deliveries, edit, send, send_api
from sqlalchemy import select

from nurture.cli.main import main
from nurture.compose.message import OutgoingMessage
from nurture.core import config as config_mod
from nurture.core.errors import (
    AmbiguousSendError,
    ConfigError,
    HeaderInjectionError,
    PermanentSendError,
    SenderConfigError,
    TemporarySendError,
)
from nurture.deliver.senders import make_sender, memory
from nurture.store import db
from nurture.store.models import Event, Prospect


@pytest.fixture(autouse=True)
def empty_outbox():
    memory.clear()
    yield
    memory.clear()


def make(i: int = 1, to: str = "taro@example.com", subject: str = "今月のトピックス") -> OutgoingMessage:
    return OutgoingMessage(
        delivery_id=i,
        campaign="mfg",
        to_address=to,
        from_address="news@example.co.jp",
        subject=subject,
        html="<p>本文</p>",
        text="本文",
        list_unsubscribe={
            "List-Unsubscribe": "<https://x.example/u>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


@pytest.fixture
def sender(tmp_path):
    (tmp_path / "nurture.toml").write_text('[delivery]\nsender = "memory"\n', encoding="utf-8")
    s = make_sender(config_mod.load(tmp_path / "nurture.toml"))
    assert isinstance(s, memory.MemorySender) and s.name == "memory"
    return s


def test_keeps_the_message_and_the_bytes_a_real_sender_would_transmit(sender):
    msg = make()
    result = sender.send(msg)
    (kept,) = memory.outbox
    assert kept.message is msg
    parsed = email.message_from_bytes(kept.mime, policy=email.policy.default)
    assert parsed["Subject"] == "今月のトピックス" and parsed["To"] == "taro@example.com"
    assert result.provider_message_id == parsed["Message-ID"]
    memory.clear()
    assert memory.outbox == []


def test_refuses_a_header_injection_like_the_other_senders(sender):
    with pytest.raises(HeaderInjectionError):
        sender.send(make(subject="hi\r\nBcc: x@example.com"))
    assert memory.outbox == []


@pytest.mark.parametrize(
    "error",
    [
        TemporarySendError("451 4.3.0 later", code=451),
        PermanentSendError("550 5.1.1 unknown", code=550, hard_bounce=True),
        AmbiguousSendError("timeout after the dot"),
        SenderConfigError("login refused"),
    ],
)
def test_scripted_failures_come_in_order_then_sending_resumes(sender, error):
    memory.fail_next(error, times=2)
    for _ in range(2):
        with pytest.raises(type(error)):
            sender.send(make())
    sender.send(make())
    assert len(memory.outbox) == 1


def test_a_failure_for_one_address_holds_until_cleared(sender):
    memory.fail_for("Gone@Example.com", PermanentSendError("550 5.1.1 unknown", code=550, hard_bounce=True))
    for _ in range(2):
        with pytest.raises(PermanentSendError):
            sender.send(make(to="gone@example.com"))
    sender.send(make(to="ok@example.com"))
    memory.clear()
    sender.send(make(to="gone@example.com"))
    assert [m.message.to_address for m in memory.outbox] == ["gone@example.com"]


def test_the_outbox_is_shared_and_safe_across_threads(tmp_path):
    """The engine makes one sender per worker thread; they all append to the one outbox."""
    (tmp_path / "nurture.toml").write_text('[delivery]\nsender = "memory"\n', encoding="utf-8")
    config = config_mod.load(tmp_path / "nurture.toml")
    memory.fail_next(TemporarySendError("451 later"), times=50)
    failures = []

    def work(offset: int) -> None:
        s = make_sender(config)
        for i in range(offset, offset + 100):
            try:
                s.send(make(i))
            except TemporarySendError:
                failures.append(i)

    threads = [threading.Thread(target=work, args=(n * 100,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(failures) == 50 and len(memory.outbox) == 350
    assert len({m.message.delivery_id for m in memory.outbox} | set(failures)) == 400


# ------------------------------------------------------------------------------------------ under nurture send


@pytest.fixture
def memory_ws(ws):
    edit(ws / "nurture.toml", 'sender = "smtp"', 'sender = "memory"')
    return ws


def test_nurture_send_into_memory(memory_ws, runner):
    add_prospects(
        memory_ws, ["a@example.com,山田 太郎,山田製作所,製造業,warm,opt_in", "b@example.com,B,Co,物流,warm,opt_in"]
    )
    result, report = send(runner)
    assert result.exit_code == 0, result.output
    assert report["sent"] == 2
    assert sorted(m.message.to_address for m in memory.outbox) == ["a@example.com", "b@example.com"]
    mail = next(m for m in memory.outbox if m.message.to_address == "a@example.com")
    parsed = email.message_from_bytes(mail.mime, policy=email.policy.default)
    assert parsed["Subject"] == "山田製作所様：業界ニュース第1号"
    assert "https://t.example.co.jp/o/" in parsed.get_body(("html",)).get_content()  # the open pixel
    assert {d.state for d in deliveries(memory_ws)} == {"sent"}
    assert "via memory" in runner.invoke(main, ["send"], catch_exceptions=False).output


def test_scripted_failures_drive_the_retry_and_bounce_paths(memory_ws, runner, monkeypatch):
    add_prospects(memory_ws, ["later@example.com,L,Co,製造業,warm,opt_in", "gone@example.com,G,Co,製造業,warm,opt_in"])
    memory.fail_for("later@example.com", TemporarySendError("451 4.3.0 try again later", code=451))
    memory.fail_for("gone@example.com", PermanentSendError("550 5.1.1 user unknown", code=550, hard_bounce=True))
    result, report = send(runner)
    assert report["sent"] == 0 and report["deferred"] == {"provider deferred": 1}
    assert report["failed"] == {"provider refused": 1}
    states = {d.email: d.state for d in deliveries(memory_ws)}
    assert states == {"later@example.com": "pending", "gone@example.com": "failed"}
    cfg = config_mod.load(memory_ws / "nurture.toml")
    with db.engine_for(cfg.database_url).connect() as conn:
        assert conn.execute(select(Event.type, Event.source)).all() == [("bounced", "send")]
        assert conn.scalar(select(Prospect.status).where(Prospect.email == "gone@example.com")) == "bounced"
    memory.clear()
    at(monkeypatch, "2026-11-24T01:05:00+00:00")  # after the backoff
    result, report = send(runner)
    assert report["sent"] == 1 and [m.message.to_address for m in memory.outbox] == ["later@example.com"]


def test_several_sender_processes_are_refused(memory_ws):
    """What the memory sender keeps would end with forked sender processes: refused before anything is done."""
    edit(memory_ws / "nurture.toml", 'sender = "memory"', 'sender = "memory"\nprocesses = 2')
    add_prospects(memory_ws, ["a@example.com,A,Co,製造業,warm,opt_in"])
    with pytest.raises(ConfigError, match="processes = 1"):
        send_api(memory_ws)
    assert deliveries(memory_ws) == [] and memory.outbox == []
