"""Request bodies are limited before they are read (raw ASGI, :class:`BodyLimit`).

Nothing the server answers needs a big body: the pages' forms and RFC 8058's one-click POST are a few dozen bytes
(:data:`FORM_LIMIT` for every path but the webhooks), a provider's webhook batch is bounded by
``[tracking] webhook_max_bytes``. A declared ``Content-Length`` over the limit is answered 413 at once, unread; a
body without one (chunked) is counted while the route reads it, and the read stops with 413 as soon as it passes the
limit (:class:`BodyTooLarge`, turned into the answer by :func:`too_large`). An unparsable ``Content-Length`` is 400.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Bodies of the pages' forms (/u, /p, /stop) and of anything else but the webhooks.
FORM_LIMIT = 8 * 1024
WEBHOOK_PREFIX = "/webhooks/"


class BodyTooLarge(Exception):
    """A body passed its limit while being read; the answer is 413 (:func:`too_large`)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body too large: at most {limit} bytes are accepted here")
        self.limit = limit


def _answer(status: int, text: str) -> Response:
    return PlainTextResponse(text + "\n", status_code=status, headers={"Connection": "close"})


async def too_large(request: Request, exc: Exception) -> Response:
    """The 413 for a body that passed its limit mid-read (a Starlette exception handler)."""
    return _answer(413, str(exc))


class BodyLimit:
    """ASGI middleware: :data:`FORM_LIMIT` bytes for every body, ``webhook_limit`` under ``/webhooks/``."""

    def __init__(self, app: ASGIApp, webhook_limit: int) -> None:
        self.app = app
        self.webhook_limit = webhook_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.webhook_limit if scope["path"].startswith(WEBHOOK_PREFIX) else FORM_LIMIT
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    await _answer(400, "bad Content-Length")(scope, receive, send)
                    return
                if len(value) > 15 or int(value) > limit:  # 16+ digits: petabytes (and no 4300-digit int())
                    await _answer(413, str(BodyTooLarge(limit)))(scope, receive, send)
                    return
                break
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)
