"""Form posts to the tracking server: a bounded read of the body, and its fields in either encoding a form or a
mail client's one-click unsubscribe may use."""

from __future__ import annotations

import email.policy
from email.parser import BytesParser
from urllib.parse import parse_qs

from starlette.requests import Request

#: Only this much of a body is read: the pages' forms and RFC 8058's one-click body are a few dozen bytes, and a
#: bigger body must not cost the server its memory. The fields in the first MAX_FORM_BYTES still count.
MAX_FORM_BYTES = 10_000


def form_fields(content_type: str, body: bytes) -> dict[str, list[str]]:
    """The fields of a form POST, ``application/x-www-form-urlencoded`` or ``multipart/form-data``.

    RFC 8058 section 3: the one-click POST "SHOULD" be multipart/form-data and "MAY" be urlencoded, so both
    are read (multipart with the standard library's MIME parser: no extra dependency for a one-field form).
    """
    if content_type.lower().startswith("multipart/form-data"):
        message = BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body
        )
        fields: dict[str, list[str]] = {}
        if message.is_multipart():
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if isinstance(name, str):
                    payload = part.get_payload(decode=True)
                    value = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
                    fields.setdefault(name, []).append(value)
        return fields
    return parse_qs(body.decode("utf-8", "replace"))


async def read_form(request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, list[str]]:
    """The fields of ``request``'s form body (see :func:`form_fields`), read up to ``limit`` bytes (default
    :data:`MAX_FORM_BYTES`; the sign-up form's free text needs more): the rest of a longer body is not read at all."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) >= limit:
            break
    return form_fields(request.headers.get("content-type", ""), body[:limit])
