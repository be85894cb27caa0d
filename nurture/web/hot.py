"""Tracking hits: the open pixel and click redirects (:class:`HotPaths`, raw ASGI), and the two tracking routes
that are not hot — the honeypot link and clicks refused for a bad token or an unsafe target.

Hits are queued in the site's :class:`~nurture.track.EventBuffer` (the answer never waits for the database) and
labelled when written. A token for delivery 0 (a preview) records nothing.
"""

from __future__ import annotations

import base64
import functools
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from nurture.compose import links as tracking
from nurture.core import clock
from nurture.track import CLICKED, OPENED, EventBuffer, NewEvent, Source
from nurture.web.metrics import HITS
from nurture.web.site import NO_STORE, Site

#: The smallest transparent GIF (43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


class HotPaths:
    """Raw ASGI for the two endpoints hit thousands of times a second: the open pixel and valid click redirects.

    Starlette's routing, Request and Response objects cost more than the work itself here, so these requests are
    answered straight from the ASGI scope (about twice the throughput, see bench/track.py). Everything else —
    including clicks with a bad token or an unsafe target, which get the 404 page — goes on to the app.
    """

    def __init__(self, app: ASGIApp, secret: bytes, buffer: EventBuffer, previous: tuple[bytes, ...] = ()) -> None:
        self.app = app
        self.secret = secret
        self.previous = previous
        self.buffer = buffer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path: str = scope["path"]
            if path.startswith("/o/"):
                HITS.opens += 1  # the event loop's thread only: no lock needed
                parts = tracking.verify(self.secret, tracking.OPEN, path[3:].removesuffix(".gif"), self.previous)
                if parts and len(parts) == 1 and parts[0].isdigit():
                    queue_hit(self.buffer, scope, OPENED, int(parts[0]), Source.PIXEL, "", {})
                await send({"type": "http.response.start", "status": 200, "headers": _PIXEL_HEADERS})
                await send({"type": "http.response.body", "body": PIXEL})
                return
            if path.startswith("/c/"):
                parts = tracking.verify(self.secret, tracking.CLICK, path[3:], self.previous)
                if parts and len(parts) == 3 and parts[0].isdigit() and tracking.is_safe_target(parts[2]):
                    HITS.clicks += 1
                    index = parts[1]
                    queue_hit(
                        self.buffer,
                        scope,
                        CLICKED,
                        int(parts[0]),
                        Source.LINK,
                        parts[2],
                        {"link_index": int(index) if index.isdigit() else index},
                    )
                    # Location must be ASCII (RFC 9110 10.2.2, RFC 3986): percent-encode an IRI's non-ASCII.
                    location = quote(parts[2], safe=":/?#[]@!$&'()*+,;=%~-._").encode("ascii")
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 302,
                            "headers": [(b"location", location), *_REDIRECT_HEADERS],
                        }
                    )
                    await send({"type": "http.response.body", "body": b""})
                    return
        await self.app(scope, receive, send)


def queue_hit(
    buffer: EventBuffer, scope: Scope, kind: str, delivery_id: int, source: str, url: str, data: dict[str, Any]
) -> None:
    """Queue an open or click of ``delivery_id`` with the request's user agent, address and method, read straight
    from the ASGI ``scope``; a preview link (delivery 0) records nothing."""
    if delivery_id <= 0:  # a preview link: nothing to record against
        return
    agent = ""
    for name, value in scope["headers"]:
        if name == b"user-agent":
            agent = value.decode("latin-1")
            break
    client = scope.get("client")
    buffer.add(
        NewEvent(
            kind,
            clock.now(),
            source,
            delivery_id=delivery_id,
            user_agent=agent,
            ip=client[0] if client else "",
            method=scope["method"],
            url=url,
            data=data,
        )
    )


_PIXEL_HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(PIXEL)).encode()),
    *((k.lower().encode(), v.encode()) for k, v in NO_STORE.items()),
]
_REDIRECT_HEADERS = [
    (b"content-length", b"0"),
    (b"referrer-policy", b"no-referrer"),
    *((k.lower().encode(), v.encode()) for k, v in NO_STORE.items()),
]


async def honeypot(site: Site, request: Request) -> Response:
    """The link hidden from people: 200 and a machine click for its delivery; a bad token gets the 404 page."""
    parts = tracking.verify(site.secret, tracking.HONEYPOT, request.path_params["token"], site.previous)
    if not parts or len(parts) != 1 or not parts[0].isdigit():
        return site.pages.not_found(request)
    queue_hit(site.buffer, request.scope, CLICKED, int(parts[0]), Source.LINK, "", {"honeypot": True})
    return PlainTextResponse("", headers={**NO_STORE, "X-Robots-Tag": "noindex, nofollow"})


async def click_refused(site: Site, request: Request) -> Response:
    """Valid clicks never get here (:class:`HotPaths` answers them): a tampered token or unsafe target gets the
    404 page, no redirect."""
    return site.pages.not_found(request)


def routes(site: Site) -> list[Route]:
    """``/c`` (refused clicks) and ``/h`` (honeypot) for ``site``; :class:`HotPaths` wraps the whole app."""
    return [
        Route("/c/{token}", functools.partial(click_refused, site), methods=["GET"]),
        Route("/h/{token}", functools.partial(honeypot, site), methods=["GET"]),
    ]
