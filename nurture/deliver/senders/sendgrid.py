"""Delivery through SendGrid's v3 Mail Send API with the official ``sendgrid`` client.

One request per message: each prospect's mail is rendered individually (own subject, links signed with its
delivery id, own unsubscribe URL), so v3 personalizations -- which share one body and differ only by
substitutions -- would not carry it without moving our rendering into SendGrid's templating. See the
delivery engineer's report for the numbers; the HTTP round trip is not the bottleneck at our rates.

Payload: from/reply_to/subject/content (text/plain then text/html, the order SendGrid requires), our delivery
id in ``custom_args.nurture_delivery_id`` (never PII: SendGrid echoes custom_args in every webhook event),
the campaign in ``categories``, List-Id/List-Unsubscribe/List-Unsubscribe-Post in ``headers``, sandbox mode
per ``[sendgrid] sandbox``. SendGrid's own click/open/subscription tracking is switched off: nurture rewrites
links and adds the pixel itself (tracking.py), and a second rewrite would hide our links and double-count.

Outcomes (SendGrid "Mail Send errors" reference):

* 202 -> SendResult(provider_message_id = X-Message-Id, the prefix of the webhook events' sg_message_id)
* 429 -> TemporarySendError(retry_after = X-RateLimit-Reset - now; the header is epoch seconds)
* 5xx, connection refused/reset before the request was sent -> TemporarySendError
* 401/403 -> SenderConfigError: the API key is wrong (or lacks the Mail Send permission) for every message, so
  the run stops and the mails stay pending
* 400/413 (and other 4xx) -> PermanentSendError with SendGrid's error messages
* timeout or disconnect after the request was sent -> AmbiguousSendError: the v3 API has no idempotency key,
  so a blind retry may send twice; the loop reconciles with the webhook's ``processed`` event first.

The client has no timeout by default; we always pass ``[sendgrid] timeout``.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
from collections.abc import Mapping
from typing import Any

import python_http_client.exceptions as http_errors
from sendgrid import SendGridAPIClient

from nurture.compose.message import OutgoingMessage, list_id_for, validate
from nurture.core import clock
from nurture.core.config import Config
from nurture.core.errors import (
    AmbiguousSendError,
    ConfigError,
    PermanentSendError,
    SenderConfigError,
    SendError,
    TemporarySendError,
)
from nurture.deliver.senders.base import Sender, SendResult

# Headers SendGrid sets itself and refuses in ``headers`` (v3 Mail Send reference, "headers").
_RESERVED = frozenset(
    h.lower()
    for h in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    )
)
MAX_RETRY_AFTER = 3600.0


def payload_for(msg: OutgoingMessage, *, sandbox: bool = False) -> dict[str, Any]:
    """The v3 /mail/send JSON body for one message (header values checked like build_mime does)."""
    validate(msg)
    headers = {"List-Id": msg.list_id or list_id_for(msg.campaign, msg.from_address)}
    headers.update(msg.list_unsubscribe)
    headers.update({k: v for k, v in msg.extra_headers.items() if k.lower() not in _RESERVED})
    to = {"email": msg.to_address}
    if msg.to_name:
        to["name"] = msg.to_name
    sender = {"email": msg.from_address}
    if msg.from_name:
        sender["name"] = msg.from_name
    body: dict[str, Any] = {
        "personalizations": [{"to": [to]}],
        "from": sender,
        "subject": msg.subject,
        "content": [{"type": "text/plain", "value": msg.text}, {"type": "text/html", "value": msg.html}],
        "headers": headers,
        "custom_args": {"nurture_delivery_id": str(msg.delivery_id)},
        "categories": [msg.campaign[:255]],
        "tracking_settings": {
            "click_tracking": {"enable": False, "enable_text": False},
            "open_tracking": {"enable": False},
            "subscription_tracking": {"enable": False},
        },
        "mail_settings": {"sandbox_mode": {"enable": bool(sandbox)}},
    }
    if msg.reply_to:
        body["reply_to"] = {"email": msg.reply_to}
    return body


def _error_messages(body: bytes) -> str:
    """SendGrid's ``{"errors": [{"message", "field"}]}`` as one line; raw text if it is not that shape."""
    try:
        errors = json.loads(body or b"{}").get("errors") or []
        parts = [f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message")) for e in errors]
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError):
        pass
    return (body or b"").decode("utf-8", "replace").strip()[:500] or "(no details)"


class SendgridSender(Sender):
    """Posts each message to ``{host}/v3/mail/send``; thread-confined like every sender."""

    name = "sendgrid"

    def __init__(
        self, api_key: str, host: str = "https://api.sendgrid.com", timeout: float = 15.0, sandbox: bool = False
    ) -> None:
        if not api_key:
            raise ConfigError(
                "[sendgrid] api_key is not set", hint="export SENDGRID_API_KEY=SG.xxxx (keep it out of nurture.toml)"
            )
        if timeout <= 0:
            raise ConfigError("[sendgrid] timeout must be > 0 seconds")
        self.host, self.timeout, self.sandbox = host.rstrip("/"), timeout, sandbox
        self.client = SendGridAPIClient(api_key=api_key, host=self.host)

    @classmethod
    def from_config(cls, config: Config) -> SendgridSender:
        s = config.sendgrid
        return cls(s.api_key, host=s.host, timeout=s.timeout, sandbox=s.sandbox)

    def send(self, msg: OutgoingMessage) -> SendResult:
        body = payload_for(msg, sandbox=self.sandbox)
        try:
            response = self.client.client.mail.send.post(request_body=body, timeout=self.timeout)
        except http_errors.HTTPError as exc:
            raise self._classify(exc.status_code, exc.body, exc.headers) from None
        except urllib.error.URLError as exc:
            # urllib wraps errors raised while connecting and *sending* the request (do_open): the request
            # did not fully leave, so SendGrid cannot have accepted it.
            raise TemporarySendError(f"SendGrid {self.host}: request not sent: {exc.reason}") from None
        except (TimeoutError, http.client.HTTPException, ConnectionError, OSError) as exc:
            # Raised while waiting for the response: the request was sent and may have been accepted.
            raise AmbiguousSendError(
                f"SendGrid {self.host}: no answer within {self.timeout:g} s after the request was sent "
                f"({type(exc).__name__}: {exc}); it may have been accepted"
            ) from None
        if response.status_code not in (200, 202):
            raise self._classify(response.status_code, response.body, response.headers)
        message_id = response.headers.get("X-Message-Id") or ""
        return SendResult(message_id, detail=f"{response.status_code} accepted")

    def _classify(self, status: int, body: bytes, headers: Mapping[str, str] | None) -> SendError | SenderConfigError:
        details = _error_messages(body)
        words = f"SendGrid {status}: {details}"
        if status == 429:
            return TemporarySendError(words, code=429, retry_after=self._retry_after(headers))
        if status >= 500:
            return TemporarySendError(words, code=status)
        if status in (401, 403):  # the key, not this message: no other message would go through either
            return SenderConfigError(
                f"SendGrid refused the API key ({status}: {details})",
                code=status,
                hint="check SENDGRID_API_KEY (it needs the Mail Send permission)",
            )
        return PermanentSendError(words, code=status)

    @staticmethod
    def _retry_after(headers: Mapping[str, str] | None) -> float | None:
        """Seconds until X-RateLimit-Reset (epoch seconds, SendGrid rate-limit docs), clamped to an hour."""
        try:
            reset = float((headers or {}).get("X-RateLimit-Reset", ""))
        except (TypeError, ValueError, AttributeError):
            return None
        return min(MAX_RETRY_AFTER, max(0.0, reset - clock.now().timestamp()))
