"""Form bodies: both encodings RFC 8058 allows, and reads that stop at MAX_FORM_BYTES."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from nurture.web.forms import MAX_FORM_BYTES, form_fields, read_form


def test_urlencoded_and_multipart_fields():
    assert form_fields("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click&a=1&a=2") == {
        "List-Unsubscribe": ["One-Click"],
        "a": ["1", "2"],
    }
    body = (
        b'--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n'
        b'--b\r\nContent-Disposition: form-data; name="choice"\r\n\r\n\xe4\xb8\x80\r\n--b--\r\n'
    )
    assert form_fields("multipart/form-data; boundary=b", body) == {"List-Unsubscribe": ["One-Click"], "choice": ["一"]}
    assert form_fields("multipart/form-data; boundary=b", b"not multipart") == {}


def test_read_form_stops_at_the_limit():
    """A body far bigger than any form is not read to its end; the fields at its start still count."""
    chunks = [b"List-Unsubscribe=One-Click&x="] + [b"y" * 1000] * 1000
    sent = []

    async def receive():
        sent.append(1)
        return {"type": "http.request", "body": chunks[len(sent) - 1], "more_body": len(sent) < len(chunks)}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/u/t",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
    }
    fields = asyncio.run(read_form(Request(scope, receive)))
    assert fields["List-Unsubscribe"] == ["One-Click"] and len(fields["x"][0]) < MAX_FORM_BYTES
    assert len(sent) <= MAX_FORM_BYTES // 1000 + 1
