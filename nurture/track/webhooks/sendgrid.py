"""SendGrid Event Webhook: signed batches of delivery and engagement events.

Verify: ECDSA P-256 / SHA-256 over ``timestamp + raw body`` with the public key SendGrid shows under Mail
Settings -> Signed Event Webhook (base64 DER, ``[sendgrid] webhook_public_key``), via the official
``sendgrid.helpers.eventwebhook.EventWebhook``. That helper does not look at the timestamp's age, so a batch
whose ``X-Twilio-Email-Event-Webhook-Timestamp`` is more than ``webhook_max_age_seconds`` away from now is
refused as a replay. A malformed base64 signature raises ``binascii.Error`` inside the helper: refused (403).

Correlate: nurture puts ``nurture_delivery_id`` in ``custom_args`` at send time; SendGrid copies custom args
into every event as top-level keys. Without it, the part of ``sg_message_id`` before the first dot is the
``X-Message-Id`` of the send response, stored as ``deliveries.provider_message_id``.

Deduplicate: SendGrid retries a batch for up to 24 hours and duplicates are routine; ``sg_event_id`` is the
event's identity, with (sg_message_id, event, timestamp, url) as the fallback key.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from nurture.core import clock
from nurture.core.config import Config
from nurture.core.errors import ConfigError
from nurture.track import vocabulary as ev
from nurture.track.vocabulary import NewEvent, Source
from nurture.track.webhooks.base import Webhook, WebhookRejected

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

#: SendGrid ``event`` -> nurture event type (SendGrid "Event Webhook Reference"). Anything not listed is kept
#: as ``unknown`` with the raw event.
EVENT_TYPES: dict[str, str] = {
    "processed": ev.SENT,  # accepted for delivery: reconciles an ambiguous send
    "delivered": ev.DELIVERED,
    "deferred": ev.DEFERRED,  # the receiving server said "later"; SendGrid retries up to 72 h
    "bounce": ev.BOUNCED,  # hard or soft by ``type``, below
    "dropped": ev.DROPPED,  # SendGrid will not send to this address
    "open": ev.OPENED,
    "click": ev.CLICKED,
    "spamreport": ev.COMPLAINED,
    "unsubscribe": ev.UNSUBSCRIBED,
    "group_unsubscribe": ev.UNSUBSCRIBED,
    # group_resubscribe: deliberately unknown. Re-mailing someone who opted out needs fresh consent recorded by
    # a person (特定電子メール法; GDPR Art. 7), not a provider event.
}
#: ``bounce`` events: ``type`` bounce = permanent (hard), blocked = the receiver refused for now (soft).
BOUNCE_KINDS = {"bounce": "hard", "blocked": "soft"}
#: ``dropped`` reasons -> the suppression they imply. Reasons about the message rather than the address
#: suppress nothing; any other reason suppresses as ``bounced``.
DROP_REASONS = {
    "bounced address": "bounced",
    "invalid": "bounced",
    "unsubscribed address": "unsubscribed",
    "unsubscribed group": "unsubscribed",
    "spam reporting address": "complained",
    "invalid smtpapi header": "",
    "spam content": "",
}


class SendgridWebhook(Webhook):
    """Verifier and normaliser for SendGrid's signed Event Webhook."""

    name = "sendgrid"

    def __init__(self, public_key: str, max_age_seconds: int = 600) -> None:
        self.max_age_seconds = max_age_seconds
        self._key = None
        if public_key:
            # Imported here, for start-up time: the SendGrid package (~0.1 s) loads only where a key is set.
            from sendgrid.helpers.eventwebhook import EventWebhook

            try:
                self._helper = EventWebhook(public_key.strip())
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    f"[sendgrid] webhook_public_key is not a valid public key ({exc})",
                    hint="copy the 'Verification Key' from SendGrid: Settings -> Mail Settings -> "
                    "Signed Event Webhook (one base64 line)",
                ) from None
            self._key = self._helper.public_key

    @classmethod
    def from_config(cls, config: Config) -> SendgridWebhook:
        return cls(config.sendgrid.webhook_public_key, config.sendgrid.webhook_max_age_seconds)

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        if self._key is None:
            raise WebhookRejected(403, "no [sendgrid] webhook_public_key configured: refusing unsigned events")
        signature = headers.get(SIGNATURE_HEADER) or headers.get(SIGNATURE_HEADER.lower()) or ""
        timestamp = headers.get(TIMESTAMP_HEADER) or headers.get(TIMESTAMP_HEADER.lower()) or ""
        if not signature or not timestamp:
            raise WebhookRejected(403, "signature or timestamp header missing")
        try:
            sent = int(timestamp)
        except ValueError:
            raise WebhookRejected(403, f"timestamp {timestamp[:40]!r} is not a Unix time") from None
        age = abs(clock.now().timestamp() - sent)
        if age > self.max_age_seconds:
            raise WebhookRejected(
                403, f"timestamp is {age:.0f} s away from now (window {self.max_age_seconds} s): replay refused"
            )
        try:
            payload = body.decode("utf-8")
            ok = self._helper.verify_signature(payload, signature, timestamp)
        except (binascii.Error, ValueError):  # malformed base64 / DER signature, or a body that is not UTF-8
            ok = False
        if not ok:
            raise WebhookRejected(403, "bad signature")

    def parse(self, body: bytes) -> list[dict[str, Any]]:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise WebhookRejected(400, "body is not JSON") from None
        except RecursionError:
            raise WebhookRejected(400, "body is JSON nested too deeply") from None
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise WebhookRejected(400, "body is not a JSON array of events")
        return data

    def normalise(self, raw: dict[str, Any]) -> NewEvent:
        name = str(raw.get("event", ""))
        kind = EVENT_TYPES.get(name, ev.UNKNOWN)
        message_id = str(raw.get("sg_message_id") or "")
        data: dict[str, Any] = {"raw": raw}
        if kind == ev.BOUNCED:
            data["bounce"] = BOUNCE_KINDS.get(str(raw.get("type", "bounce")), "hard")
        elif kind == ev.DROPPED:
            data["suppress"] = DROP_REASONS.get(str(raw.get("reason", "")).strip().lower(), "bounced")
        elif kind == ev.OPENED and "sg_machine_open" in raw:
            data["sg_machine_open"] = bool(raw["sg_machine_open"])
        elif kind == ev.CLICKED and isinstance(raw.get("url_offset"), dict):
            data["link_index"] = raw["url_offset"].get("index")
        return NewEvent(
            type=kind,
            occurred_at=_instant(raw.get("timestamp")),
            source=Source.SENDGRID,
            delivery_id=_int(raw.get("nurture_delivery_id")),
            provider_message_id=message_id.split(".", 1)[0],
            email=str(raw.get("email") or ""),
            url=str(raw.get("url") or ""),
            user_agent=str(raw.get("useragent") or ""),
            ip=str(raw.get("ip") or ""),
            dedup_key=dedup_key(raw),
            data=data,
        )


def dedup_key(raw: dict[str, Any]) -> str:
    """``sendgrid:<sg_event_id>``, else a hash of (sg_message_id, event, timestamp, url)."""
    event_id = raw.get("sg_event_id")
    if event_id:
        return f"sendgrid:{event_id}"
    parts = "\x1f".join(str(raw.get(k, "")) for k in ("sg_message_id", "event", "timestamp", "url"))
    return "sendgrid:h:" + hashlib.sha256(parts.encode()).hexdigest()[:48]


#: The largest id a BIGINT column holds; a bigger "delivery id" is not one of ours (the event is still recorded,
#: matched by its message id instead).
MAX_ID = 2**63 - 1


def _int(value: Any) -> int | None:
    try:
        text = str(value)
        number = int(text) if len(text) <= 20 else 0  # no 4300-digit int() (Python refuses those with ValueError)
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= MAX_ID else None


def _instant(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return clock.now()
