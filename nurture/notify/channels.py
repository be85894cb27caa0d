"""The two ways a notice leaves: a mail through the configured sender, and a JSON POST to a webhook.

Both raise :class:`ChannelError` when the notice did not get through (the caller retries later) and return a
short receipt when it did. A mail that may or may not have been accepted (the sender's ``AmbiguousSendError``:
the dot went out, no answer came) counts as delivered: resending would risk a duplicate, and the escalation is
the safety net when nobody reacts.

The webhook body is Slack-compatible (an incoming webhook shows ``text``; Slack ignores keys it does not know)
and carries the same facts structured under ``handoff``, for tools that read JSON.
"""

from __future__ import annotations

import json
import threading
from datetime import date, datetime
from typing import Any

import httpx

from nurture.compose.message import OutgoingMessage
from nurture.core.config import Config
from nurture.core.errors import AmbiguousSendError, NurtureError, SendError
from nurture.deliver.senders import make_sender
from nurture.notify.render import Rendered

#: ``OutgoingMessage.campaign`` of notices and digests: names their List-Id and Message-ID.
NOTICE_CAMPAIGN = "nurture-handoff"
DIGEST_CAMPAIGN = "nurture-digest"


class ChannelError(Exception):
    """The notice did not get through this time; ``str()`` says why (kept in ``handoffs.notice_error``)."""


def _json_default(value: Any) -> str:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def send_mail(config: Config, to: str, rendered: Rendered, *, ident: int, campaign: str = NOTICE_CAMPAIGN) -> str:
    """Send ``rendered`` to ``to`` through ``[delivery] sender``; ``ident`` (the handoff id) makes the Message-ID,
    so a retried notice carries the same one. Returns the sender's receipt."""
    ident_ = config.identity
    from_address = ident_.from_address or (config.handoff.default_owner or to)
    msg = OutgoingMessage(
        delivery_id=ident,
        campaign=campaign,
        to_address=to,
        from_address=from_address,
        from_name=ident_.from_name or "nurture",
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        extra_headers={"Auto-Submitted": "auto-generated"},  # RFC 3834: no vacation replies to a robot
    )
    try:
        with make_sender(config) as sender:
            result = sender.send(msg)
    except AmbiguousSendError as exc:
        return f"mail to {to}: sent, unconfirmed ({exc})"
    except (SendError, NurtureError, OSError) as exc:
        raise ChannelError(f"mail to {to}: {exc}") from exc
    return f"mail to {to}: {result.detail or 'accepted'}".strip()


def post_webhook(
    config: Config, url: str, text: str, payload: dict[str, Any], fields: list[tuple[str, str]] | None = None
) -> str:
    """POST JSON to ``url``; a 2xx answer is delivery. ``[handoff] webhook_format``: ``json`` posts
    ``{"text": text, **payload}`` (Slack shows the text and ignores the rest); ``slack`` posts only what Slack's
    incoming webhooks document: ``text`` plus Block Kit blocks (a section with the text and one with ``fields``,
    at most 10, as Slack allows), for workspaces or relays that refuse unknown keys."""
    if config.handoff.webhook_format == "slack":
        blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}]
        if fields:
            blocks.append(
                {
                    "type": "section",
                    "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{value}"[:1900]} for name, value in fields[:10]],
                }
            )
        document: dict[str, Any] = {"text": text, "blocks": blocks}
    else:
        document = {"text": text, **payload}
    body = json.dumps(document, ensure_ascii=False, default=_json_default).encode("utf-8")
    try:
        response = _client().post(
            url,
            content=body,
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "nurture-notify"},
            timeout=config.handoff.webhook_timeout,
        )
    except httpx.HTTPError as exc:
        raise ChannelError(f"webhook {_safe(url)}: {type(exc).__name__}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise ChannelError(f"webhook {_safe(url)}: HTTP {response.status_code} {response.text[:200]}".strip())
    return f"webhook {_safe(url)}: HTTP {response.status_code}"


_clients: list[httpx.Client] = []
_clients_lock = threading.Lock()


def _client() -> httpx.Client:
    """One client per process, shared by threads (httpx clients are thread-safe): building one loads the CA
    bundle into a new TLS context, ~0.1 s each (bench/notify.py), and it keeps connections alive between posts."""
    with _clients_lock:
        if not _clients:
            _clients.append(httpx.Client(follow_redirects=False))
        return _clients[0]


def _safe(url: str) -> str:
    """The URL without its path: Slack puts the secret in the path, and errors end up in the database."""
    parts = httpx.URL(url)
    return f"{parts.scheme}://{parts.host}{':' + str(parts.port) if parts.port else ''}/…"
