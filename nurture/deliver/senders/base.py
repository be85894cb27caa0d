"""The contract every sender fulfils, and what a send returns.

A sender moves one :class:`~nurture.compose.message.OutgoingMessage` to a destination (a folder, an SMTP server, an
HTTP API) and reports the outcome in exactly one of four ways:

=======================  =====================================================================================
returns ``SendResult``   accepted; ``provider_message_id`` is what the destination calls it
``TemporarySendError``   not accepted, nothing delivered: retry later (``retry_after`` seconds when known)
``PermanentSendError``   refused for good, with the provider's words; ``hard_bounce`` = the address is dead
``AmbiguousSendError``   the request left and no answer came: it may have been delivered. Do not resend blindly
=======================  =====================================================================================

and one more, about the sender rather than the message: ``SenderConfigError`` (from ``open`` or ``send``) when
no message can be sent as the sender is set up (login or API key refused, TLS failing). The sending engine then
stops the run and keeps the mails pending; it never asks which sender it has (no test of ``name``): what a
sender knows about its failures it says in the error it raises and in ``event_source``.

Senders hold a connection and are not thread-safe: the sending loop makes one per worker thread with
:func:`nurture.deliver.senders.make_sender`. ``open()`` may be skipped (``send`` opens lazily); ``close()`` is
idempotent. A sender is a context manager.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

from nurture.compose.message import OutgoingMessage


@dataclass(frozen=True)
class SendResult:
    """An accepted message. ``detail`` is the provider's own words (SMTP reply, HTTP status line)."""

    provider_message_id: str
    detail: str = ""


class Sender:
    """Base class: subclasses set ``name`` and implement ``send``; ``open``/``close`` default to no-ops.

    ``name`` is recorded in ``deliveries.sender``. ``event_source`` is the ``events.source`` of the events the
    engine records from this sender's answers (a hard bounce): "send" unless the sender has its own word.
    """

    name = "base"
    event_source = "send"

    def open(self) -> None:
        """Connect (or prepare); ``send`` calls it when needed, so calling it is optional."""

    def send(self, msg: OutgoingMessage) -> SendResult:
        raise NotImplementedError(f"{type(self).__name__}.send() is not implemented")

    def close(self) -> None:
        """Release connections; safe to call twice."""

    def __enter__(self) -> Sender:
        self.open()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
