"""Senders: where a rendered message goes. ``outbox`` (default, writes .eml files), ``smtp``, ``sendgrid``, and
``memory`` (keeps messages in a list, for tests).

:func:`make_sender` is the only way the rest of nurture gets one; see :mod:`nurture.deliver.senders.base` for the
contract. Adding a sender: a module here with a :class:`~nurture.deliver.senders.base.Sender` subclass taking the
:class:`~nurture.core.config.Config`, a name in ``DeliveryConfig.sender`` and a line in ``make_sender``.
"""

from __future__ import annotations

from nurture.core.config import Config
from nurture.core.errors import ConfigError
from nurture.deliver.senders.base import Sender, SendResult

__all__ = ["SENDERS", "SendResult", "Sender", "make_sender"]

SENDERS = ("outbox", "smtp", "sendgrid", "memory")


def make_sender(config: Config) -> Sender:
    """A new, unopened sender as ``[delivery] sender`` says. One per worker thread (senders are not
    thread-safe). Raises ConfigError for an unknown name or an unusable DKIM key."""
    # Each sender is imported when chosen, for start-up time: the sendgrid client alone takes ~0.1 s to import.
    name = config.delivery.sender
    if name == "outbox":
        from nurture.deliver.senders.outbox import OutboxSender

        return OutboxSender.from_config(config)
    if name == "smtp":
        from nurture.deliver.senders.smtp import SmtpSender

        return SmtpSender.from_config(config)
    if name == "sendgrid":
        from nurture.deliver.senders.sendgrid import SendgridSender

        return SendgridSender.from_config(config)
    if name == "memory":
        from nurture.deliver.senders.memory import MemorySender

        return MemorySender.from_config(config)
    raise ConfigError(
        f"{config.source}: [delivery] sender = {name!r} is unknown", hint=f"use one of: {', '.join(SENDERS)}"
    )
