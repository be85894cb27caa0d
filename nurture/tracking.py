"""Signed tracking URLs and the unsubscribe headers of a mail (pure: no database, no I/O).

Every URL nurture puts in a mail carries an HMAC-SHA256 token made with ``config.tracking_secret()``, so the
tracking server can check it without a database lookup and nobody can make one up:

=====================  ================================  ===========================================
path                   token signs                        served by ``nurture.web``
=====================  ================================  ===========================================
``/o/<token>.gif``     ``open``: delivery id               1x1 GIF, records ``opened``
``/c/<token>``         ``click``: delivery id, index, URL  302 to that URL, records ``clicked``
``/h/<token>``         ``honeypot``: delivery id           hidden link: a click marks the clicker machine
``/u/<token>``         ``unsubscribe``: delivery, prospect GET page with a button; POST unsubscribes
``/p/<token>``         ``preferences``: delivery, prospect pause / less often / unsubscribe
``/v/<token>``         ``view``: delivery, prospect        the mail in a browser
=====================  ================================  ===========================================

Token format: ``base64url(JSON array of the parts) "." base64url(first 16 bytes of HMAC)``. The MAC covers the
purpose too, so a token for one endpoint is worthless at another. 128 bits of MAC are plenty against forgery
(NIST SP 800-107 5.3.4 allows truncating HMAC to >= 64 bits) and keep the links short.

A click token signs the target URL itself (the link index and delivery too), so the server redirects only to a
URL nurture put in that mail; targets that are not absolute http(s) URLs, or carry control characters or
backslashes, are refused even when signed (:func:`is_safe_target`).

For previews (no delivery yet) pass ``delivery_id=0``: the links work but record nothing against a delivery.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from nurture.errors import InputError

if TYPE_CHECKING:
    from nurture.config import Config

#: Token purposes (one per endpoint); the MAC covers the purpose.
OPEN = "open"
CLICK = "click"
HONEYPOT = "honeypot"
UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
VIEW = "view"

#: Paths, relative to ``[tracking] base_url``.
PATHS = {OPEN: "/o/", CLICK: "/c/", HONEYPOT: "/h/", UNSUBSCRIBE: "/u/", PREFERENCES: "/p/", VIEW: "/v/"}

_MAC_BYTES = 16
#: Longer tokens are refused unread: no URL nurture makes comes near this, and it bounds the work per request.
MAX_TOKEN_LENGTH = 8192
#: RFC 8058 section 3: the exact POST body a one-click unsubscribe sends.
ONE_CLICK_BODY = "List-Unsubscribe=One-Click"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: str, payload: bytes) -> bytes:
    # hmac.digest is the one-shot C (OpenSSL) path: the same bytes as hmac.new(...).digest(), several times
    # faster, which matters at ~10 signed links per mail.
    return hmac.digest(secret, purpose.encode() + b"\x00" + payload, "sha256")[:_MAC_BYTES]


def sign(secret: bytes, purpose: str, *parts: object) -> str:
    """A URL-safe token carrying ``parts`` (as strings) that only holders of ``secret`` can make for ``purpose``."""
    payload = json.dumps([str(p) for p in parts], ensure_ascii=False, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, purpose, payload))}"


def verify(secret: bytes, purpose: str, token: str) -> tuple[str, ...] | None:
    """The parts signed into ``token`` for ``purpose``, or None if it is malformed, forged or for another purpose.

    The MAC is compared in constant time (``hmac.compare_digest``) before the payload is parsed.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    try:
        payload = _unb64(body)
        given = _unb64(mac)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(given, _mac(secret, purpose, payload)):
        return None
    try:
        parts = json.loads(payload.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
        return None
    return tuple(parts)


def is_safe_target(url: str) -> bool:
    """Whether ``url`` may be a redirect target: an absolute http(s) URL with a host, no whitespace, control
    characters or backslashes. Refuses ``javascript:``, ``data:``, scheme-relative ``//host`` and CR/LF
    (response splitting), and ``https:\\\\host`` which some browsers read as ``https://host``."""
    if not url or len(url) > 4096 or any(ord(c) < 0x21 or c in "\x7f\\" for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname) and url[len(parts.scheme):][:3] == "://"


def _base(config: Config) -> str:
    return config.tracking.base_url.rstrip("/")


def _url(config: Config, purpose: str, *parts: object, suffix: str = "") -> str:
    return f"{_base(config)}{PATHS[purpose]}{sign(config.tracking_secret(), purpose, *parts)}{suffix}"


def urls_for(config: Config, delivery_id: int, prospect_id: int) -> dict[str, str]:
    """The per-mail URLs: ``unsubscribe``, ``preferences``, ``view_in_browser`` and ``open_pixel``."""
    return {
        "unsubscribe": _url(config, UNSUBSCRIBE, delivery_id, prospect_id),
        "preferences": _url(config, PREFERENCES, delivery_id, prospect_id),
        "view_in_browser": _url(config, VIEW, delivery_id, prospect_id),
        "open_pixel": _url(config, OPEN, delivery_id, suffix=".gif"),
    }


def click_url(config: Config, delivery_id: int, index: int, url: str) -> str:
    """The tracked link for the ``index``-th link (``url``) of a delivery's mail.

    Raises InputError for a target the tracking server would refuse to redirect to (see :func:`is_safe_target`),
    so a bad link is caught when the mail is built rather than when the prospect clicks.
    """
    if not is_safe_target(url):
        raise InputError(f"link {index} ({url!r}) cannot be click-tracked: only absolute http(s) URLs without "
                         "spaces, control characters or backslashes can be redirected to",
                         hint='fix the link in the template, or mark it data-nurture="no-track"')
    return _url(config, CLICK, delivery_id, index, url)


def honeypot_url(config: Config, delivery_id: int) -> str:
    """A link hidden from people (the renderer places it invisibly); whatever follows it is a machine."""
    return _url(config, HONEYPOT, delivery_id)


def list_unsubscribe_headers(config: Config, delivery_id: int, prospect_id: int) -> dict[str, str]:
    """``List-Unsubscribe`` (https, plus mailto when ``[identity] unsubscribe_mailto`` is set) and
    ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058 section 3; RFC 2369 3.2 for the
    ``<...>, <...>`` list). The https URL is the same as the unsubscribe link in the body: a GET shows a page,
    the one-click POST unsubscribes."""
    https = _url(config, UNSUBSCRIBE, delivery_id, prospect_id)  # the same URL as urls_for()["unsubscribe"]
    targets = [f"<{https}>"]
    mailto = config.identity.unsubscribe_mailto.strip()
    if mailto:
        address = mailto.removeprefix("mailto:")
        token = sign(config.tracking_secret(), UNSUBSCRIBE, delivery_id, prospect_id)
        targets.append(f"<mailto:{address}?subject={quote('unsubscribe ' + token)}>")
    return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": ONE_CLICK_BODY}


def token_from_path(path_segment: str, purpose: str) -> str:
    """The token in a URL path segment (strips the ``.gif`` of open pixels)."""
    return path_segment.removesuffix(".gif") if purpose == OPEN else path_segment
