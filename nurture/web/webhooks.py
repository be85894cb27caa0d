"""Provider event webhooks: ``POST /webhooks/<name>`` for each provider of :data:`nurture.track.webhooks.WEBHOOKS`.

The provider's handler verifies, parses and normalises (:class:`~nurture.track.webhooks.Webhook`); the events are
recorded before the answer. A refused request gets the handler's status (403 bad signature, 400 bad body, 413 over
``[tracking] webhook_max_bytes``); a body the database refuses (a value it cannot store) gets 422 with the reason,
since a retry would fail the same way; only a database that is unavailable gets 503, so the provider retries later
(deduplication makes a retry harmless). No answer is a 500 and nothing logs a traceback.
"""

from __future__ import annotations

import functools
import logging

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from nurture.track import record_events
from nurture.track.webhooks import WEBHOOKS, Webhook, WebhookRejected, make_webhook
from nurture.web.metrics import WEBHOOK_BATCHES
from nurture.web.site import Site

log = logging.getLogger(__name__)


async def receive(site: Site, webhook: Webhook, request: Request) -> Response:
    """One signed batch: 200 with ``received``, ``inserted`` and ``duplicates`` counts once it is recorded."""
    body = await request.body()
    try:
        events = webhook.events(request.headers, body)
    except RecursionError:  # a parser or normaliser that recursed too deep on a hostile body
        WEBHOOK_BATCHES.labels(webhook.name, "unusable").inc()
        return PlainTextResponse("body is nested too deeply", status_code=400)
    except WebhookRejected as exc:
        log.warning("%s webhook refused (%s): %s", webhook.name, exc.status, exc.reason)
        WEBHOOK_BATCHES.labels(webhook.name, "refused").inc()
        return PlainTextResponse(exc.reason, status_code=exc.status)
    except Exception as exc:  # a signed body the normaliser cannot read: the provider's bug, not ours to retry
        log.warning("%s webhook body not usable: %s: %s", webhook.name, type(exc).__name__, str(exc)[:200])
        WEBHOOK_BATCHES.labels(webhook.name, "unusable").inc()
        return PlainTextResponse(f"body cannot be used: {type(exc).__name__}", status_code=400)
    try:
        result = await run_in_threadpool(record_events, site.engine, events)
    except Exception as exc:
        if not unrecordable(exc):
            WEBHOOK_BATCHES.labels(webhook.name, "unavailable").inc()
            return unavailable(webhook, events, exc)
        WEBHOOK_BATCHES.labels(webhook.name, "unrecordable").inc()
        # The database refuses these values (out of range, NUL in text ...): a retry would fail the same way.
        reason = str(getattr(exc, "orig", None) or exc).split("\n", 1)[0][:200]
        log.warning("%s webhook batch of %d events not recordable: %s", webhook.name, len(events), reason)
        return PlainTextResponse(f"events cannot be recorded: {reason}", status_code=422)
    WEBHOOK_BATCHES.labels(webhook.name, "recorded").inc()
    return JSONResponse({"received": len(events), "inserted": result.inserted, "duplicates": result.duplicates})


def unrecordable(exc: Exception) -> bool:
    """Whether the database refused the values themselves (a retry would fail the same way), as opposed to
    being unavailable: DataError (out of range, NUL in text), IntegrityError, or a value the driver cannot bind
    (a Python-side StatementError, OverflowError, ValueError)."""
    if isinstance(exc, DBAPIError):
        return not exc.connection_invalidated and isinstance(exc, (DataError, IntegrityError))
    return isinstance(exc, (StatementError, OverflowError, ValueError, RecursionError))


def unavailable(webhook: Webhook, events: list, exc: Exception) -> Response:
    """503: the database is unavailable; the provider retries later. SQL and its parameters stay out of the log."""
    log.error(
        "recording %d %s events failed; the provider will retry: %s",
        len(events),
        webhook.name,
        str(exc).split("\n", 1)[0][:300],
    )
    return PlainTextResponse("temporarily unable to record events", status_code=503)


def routes(site: Site) -> list[Route]:
    """One route per provider. Raises ConfigError now (not on the first request) for a bad webhook key."""
    return [
        Route(f"/webhooks/{name}", functools.partial(receive, site, make_webhook(name, site.config)), methods=["POST"])
        for name in WEBHOOKS
    ]
