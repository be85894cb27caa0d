"""MemorySender (``sender = "memory"``): the test sender shipped with the library, and the failures a test can
script."""

from __future__ import annotations

import email
import email.policy
import threading

import pytest

from nurture.compose.message import OutgoingMessage
from nurture.core import config as config_mod
from nurture.core.errors import (
    AmbiguousSendError,
    HeaderInjectionError,
    PermanentSendError,
    SenderConfigError,
    TemporarySendError,
)
from nurture.deliver.senders import make_sender, memory


@pytest.fixture(autouse=True)
def empty_outbox():
    memory.clear()
    yield
    memory.clear()


def make(i: int = 1, to: str = "taro@example.com", subject: str = "今月のトピックス") -> OutgoingMessage:
    return OutgoingMessage(delivery_id=i, campaign="mfg", to_address=to, from_address="news@example.co.jp",
                           subject=subject, html="<p>本文</p>", text="本文",
                           list_unsubscribe={"List-Unsubscribe": "<https://x.example/u>",
                                             "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})


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


@pytest.mark.parametrize("error", [TemporarySendError("451 4.3.0 later", code=451),
                                   PermanentSendError("550 5.1.1 unknown", code=550, hard_bounce=True),
                                   AmbiguousSendError("timeout after the dot"),
                                   SenderConfigError("login refused")])
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
