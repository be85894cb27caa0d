"""The tracking server: open pixel, click redirects, one-click unsubscribe, preferences, view in browser, provider
webhooks and a health check — a Starlette app built by :func:`create_app` and run by ``nurture serve``.

=========================  ======  ========================================================================
path                       method  behaviour (module)
=========================  ======  ========================================================================
``/o/<token>.gif``         GET     1x1 GIF, always, fast, even for bad tokens (which record nothing) (hot)
``/c/<token>``             GET     302 to the signed target URL; tampered token or unsafe target -> 404 (hot)
``/h/<token>``             GET     honeypot: 200, records a machine click (hot)
``/u/<token>``             GET     page in the mail's language with a button; never unsubscribes (pages)
``/u/<token>``             POST    body ``List-Unsubscribe=One-Click`` (RFC 8058): unsubscribes now, 200, no
                                   redirect (pages)
``/p/<token>``             GET/POST  pause N months / mail less often / unsubscribe (pages)
``/stop``                  GET/POST  opt-out by address: a confirmation mail with a fresh ``/u`` link (optout); a
                                   ``/u`` or ``/p`` link no secret verifies gets this form too
``/v/<token>``             GET     the mail re-rendered from the campaigns loaded at start (campaign, item and
                                   template still exist; no tracking in it), else a page saying when it was
                                   sent and where it is (pages, viewer)
``/subscribe``             GET/POST  sign-up form, double opt-in (subscribe; ``[subscribe] enabled``); also
                                   ``/subscribe/token`` (the snippet's form token, CORS) and ``/s/<token>``
                                   (GET: confirm button; POST: confirms)
``/webhooks/sendgrid``     POST    signed SendGrid Event Webhook (webhooks)
``/healthz``               GET     200 ``{"status": "ok"}`` when the database answers, else 503 (app)
``/metrics``               GET     Prometheus metrics: hits, events by type and label, webhook batches, queue
                                   depth, deliveries by state (metrics); keep it off the public proxy
=========================  ======  ========================================================================

Every database write goes through :func:`nurture.track.record_events`. Opens and clicks are queued in an
:class:`~nurture.track.EventBuffer` and written in batches (every 100 ms or 250 events) by a background thread
(the pixel never waits for the database); unsubscribes, preference changes and webhooks are written before
the answer. The buffer is flushed on shutdown (SIGTERM / Ctrl-C); a ``kill -9`` loses the opens and clicks of
at most the last ~100 ms (plus any backlog, which ``/healthz`` reports as ``pending_events``).

The pixel and valid click redirects are answered by :class:`~nurture.web.hot.HotPaths`, a raw ASGI layer in front
of Starlette (the framework's routing and request objects cost more than the work); everything else is plain
Starlette. Each route module takes the :class:`~nurture.web.site.Site` it serves as an argument.

Bodies are limited before they are read (:class:`~nurture.web.limits.BodyLimit`: 8 KB, ``[tracking]
webhook_max_bytes`` for webhooks; 413 otherwise). Tokens verify with ``[tracking] secret`` first, then the
``previous_secrets`` (rotation).

GET requests and opens never change a prospect (link scanners and image proxies fetch URLs by themselves).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from datetime import timedelta

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nurture import score
from nurture.core.config import Config
from nurture.store import db
from nurture.track import EventBuffer, set_source_window
from nurture.web import hot, metrics, optout, pages, subscribe, webhooks
from nurture.web.limits import BodyLimit, BodyTooLarge, too_large
from nurture.web.periodic import Job, Periodic, jobs_for
from nurture.web.site import Pages, Site
from nurture.web.viewer import MailViewer


def create_app(
    config: Config,
    *,
    engine: Engine | None = None,
    flush_interval: float = 0.1,
    jobs: list[Job] | None = None,
) -> Starlette:
    """The tracking app for ``config``, on ``engine`` (default: the configured database); buffered hits are
    written every ``flush_interval`` seconds. ``jobs`` run in the background while the server runs (default
    :func:`nurture.web.periodic.jobs_for`; tests pass ``[]`` or their own).

    Raises ConfigError now (not on the first request) for a missing tracking secret or a bad webhook key.
    The campaign files are loaded now, for ``/v``; one that does not load is logged and skipped.
    """
    secret = config.tracking_secret()
    score.configure(config)  # every recorded event is scored with the configured rules (each worker process)
    engine = engine or db.engine_for(config.database_url)
    set_source_window(timedelta(minutes=config.tracking.source_window_minutes))
    site = Site(
        config=config,
        secret=secret,
        engine=engine,
        buffer=EventBuffer(engine, interval=flush_interval),
        pages=Pages(config.identity),
        viewer=MailViewer.load(config),
        previous=config.previous_secrets(),
    )
    routes = [
        *hot.routes(site),
        *pages.routes(site),
        *optout.routes(site),
        *subscribe.routes(site),
        *webhooks.routes(site),
        Route("/healthz", functools.partial(healthz, site), methods=["GET"]),
        *metrics.routes(engine),
    ]
    metrics.watch_buffer(site.buffer)
    periodic = Periodic(engine, config, jobs_for(config) if jobs is None else jobs)
    return Starlette(
        routes=routes,
        # HotPaths first: the pixel and clicks (GET, no body) never pay for the body limit.
        middleware=[
            Middleware(hot.HotPaths, secret=secret, buffer=site.buffer, previous=site.previous),
            Middleware(BodyLimit, webhook_limit=config.tracking.webhook_max_bytes),
        ],
        exception_handlers={BodyTooLarge: too_large},
        lifespan=functools.partial(lifespan, site, periodic),
    )


async def healthz(site: Site, request: Request) -> Response:
    """200 with the number of buffered events when the database answers; 503 naming the error's type if not."""
    try:
        await run_in_threadpool(db.ping, site.engine)
    except Exception as exc:
        return JSONResponse({"status": "database unreachable", "error": type(exc).__name__}, status_code=503)
    return JSONResponse(
        {"status": "ok", "pending_events": site.buffer.pending, "refused_links": sum(site.refused.values())}
    )


@contextlib.asynccontextmanager
async def lifespan(site: Site, periodic: Periodic, app: Starlette) -> AsyncIterator[None]:
    """Start the event buffer's writer and the periodic jobs with the server; on shutdown, stop the jobs and
    write every event still buffered."""
    site.buffer.start()
    periodic.start()
    try:
        yield
    finally:
        await run_in_threadpool(periodic.stop)
        await run_in_threadpool(site.buffer.close)
