"""Provider event webhooks: ``POST /webhooks/<name>`` for each provider of :data:`nurture.track.webhooks.WEBHOOKS`.

The provider's handler verifies, parses and normalises (:class:`~nurture.track.webhooks.Webhook`); the events are
recorded before the answer. A refused request gets the handler's status (403 bad signature, 400 bad body); a
database failure gets 503, so the provider retries later (deduplication makes a retry harmless).
"""

from __future__ import annotations

import functools
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from nurture.track import record_events
from nurture.track.webhooks import WEBHOOKS, Webhook, WebhookRejected, make_webhook
from nurture.web.site import Site

log = logging.getLogger(__name__)


async def receive(site: Site, webhook: Webhook, request: Request) -> Response:
    """One signed batch: 200 with ``received``, ``inserted`` and ``duplicates`` counts once it is recorded."""
    body = await request.body()
    try:
        events = webhook.events(request.headers, body)
    except WebhookRejected as exc:
        log.warning("%s webhook refused (%s): %s", webhook.name, exc.status, exc.reason)
        return PlainTextResponse(exc.reason, status_code=exc.status)
    try:
        result = await run_in_threadpool(record_events, site.engine, events)
    except Exception as exc:  # SQL and its parameters stay out of the log
        log.error(
            "recording %d %s events failed; the provider will retry: %s",
            len(events),
            webhook.name,
            str(exc).split("\n", 1)[0][:300],
        )
        return PlainTextResponse("temporarily unable to record events", status_code=503)
    return JSONResponse({"received": len(events), "inserted": result.inserted, "duplicates": result.duplicates})


def routes(site: Site) -> list[Route]:
    """One route per provider. Raises ConfigError now (not on the first request) for a bad webhook key."""
    return [
        Route(f"/webhooks/{name}", functools.partial(receive, site, make_webhook(name, site.config)), methods=["POST"])
        for name in WEBHOOKS
    ]
