"""A sender for tests: ``[delivery] sender = "memory"`` keeps every message in this process instead of sending it.

Like Django's locmem e-mail backend or httpx's ``MockTransport``: a full implementation of the sender contract
(:mod:`nurture.deliver.senders.base`) that a test of an application built on nurture can run ``nurture send``
(or :func:`nurture.deliver.send`) against and then read what would have left::

    from nurture.deliver.senders import memory

    memory.clear()                       # empty the outbox and forget scripted failures
    ...                                  # nurture send, with sender = "memory" in nurture.toml
    [m.message.to_address for m in memory.outbox]
    memory.outbox[0].mime                # the exact bytes the smtp sender would transmit (DKIM-signed if set up)

    memory.fail_next(TemporarySendError("451 4.3.0 try again later"), times=2)   # the next two sends
    memory.fail_for("gone@example.com", PermanentSendError("550 5.1.1 unknown", code=550, hard_bounce=True))

:data:`outbox` is module-level and shared by every ``MemorySender`` of the process (the engine makes one per
worker thread); it and the scripted failures are guarded by one lock. Each accepted message is appended once per
accepted attempt, in the order the attempts ended. Failures scripted with :func:`fail_next` are raised by the
next sends in whatever thread makes them; :func:`fail_for` failures by every send to that address until
:func:`clear`. Any exception may be scripted: a ``SenderConfigError`` stands for a refused login.

Only this process's messages are kept: forked sender processes (``[delivery] processes > 1``) would keep theirs
in their own memory, which ends with them, so the engine refuses that combination with a ConfigError.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from nurture.compose.message import DkimKey, OutgoingMessage, build_mime, message_id_for
from nurture.core.config import Config
from nurture.deliver.senders.base import Sender, SendResult


@dataclass(frozen=True)
class MemoryMail:
    """One accepted message: what the engine handed over and the MIME bytes built from it."""

    message: OutgoingMessage
    mime: bytes


#: Every message accepted by a MemorySender of this process, oldest first. Read it; empty it with :func:`clear`.
outbox: list[MemoryMail] = []
_lock = threading.Lock()
_next_failures: deque[BaseException] = deque()
_failures_for: dict[str, BaseException] = {}


def clear() -> None:
    """Empty :data:`outbox` and forget every scripted failure."""
    with _lock:
        outbox.clear()
        _next_failures.clear()
        _failures_for.clear()


def fail_next(error: BaseException, times: int = 1) -> None:
    """The next ``times`` sends (after those already scripted) raise ``error`` instead of accepting."""
    with _lock:
        _next_failures.extend([error] * times)


def fail_for(address: str, error: BaseException) -> None:
    """Every send to ``address`` (compared case-insensitively) raises ``error``, until :func:`clear`."""
    with _lock:
        _failures_for[address.lower()] = error


class MemorySender(Sender):
    """Appends each message to :data:`outbox`; ``provider_message_id`` is the message's Message-ID."""

    name = "memory"

    def __init__(self, dkim: DkimKey | None = None) -> None:
        self.dkim = dkim

    @classmethod
    def from_config(cls, config: Config) -> MemorySender:
        return cls(DkimKey.from_config(config))

    def send(self, msg: OutgoingMessage) -> SendResult:
        data = build_mime(msg, self.dkim)  # header problems raise here, as with the senders that transmit
        with _lock:
            error = _failures_for.get(msg.to_address.lower())
            if error is None and _next_failures:
                error = _next_failures.popleft()
            if error is None:
                outbox.append(MemoryMail(msg, data))
        if error is not None:
            raise error.with_traceback(None)  # a scripted error may be raised many times: no growing traceback
        return SendResult(
            msg.message_id or message_id_for(msg.delivery_id, msg.campaign, msg.from_address), detail="kept in memory"
        )
