"""Provider event webhooks: ``base.py`` holds the shared pipeline, one module per provider normalises its events.

``WEBHOOKS`` maps the URL name (``/webhooks/<name>``) to the class; ``make_webhook(name, config)`` builds one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nurture.track.webhooks.base import Webhook, WebhookRejected
from nurture.track.webhooks.sendgrid import SendgridWebhook

if TYPE_CHECKING:
    from nurture.core.config import Config

WEBHOOKS: dict[str, type[Webhook]] = {"sendgrid": SendgridWebhook}


def make_webhook(name: str, config: Config) -> Webhook:
    """The webhook handler for provider ``name``, configured from ``config``."""
    return WEBHOOKS[name].from_config(config)  # type: ignore[attr-defined]


__all__ = ["WEBHOOKS", "SendgridWebhook", "Webhook", "WebhookRejected", "make_webhook"]
