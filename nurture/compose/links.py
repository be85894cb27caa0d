"""Signed tracking URLs and the unsubscribe headers of a mail (pure: no database, no I/O).

Every URL nurture puts in a mail carries an HMAC-SHA256 token made with ``config.tracking_secret()``, so the
tracking server can check it without a database lookup and nobody can make one up:

=====================  ================================  ===========================================
path                   token signs                        served by ``nurture.web.app``
=====================  ================================  ===========================================
``/o/<token>.gif``     ``open``: delivery id               1x1 GIF, records ``opened``
``/c/<token>``         ``click``: delivery id, index, URL  302 to that URL, records ``clicked``
``/h/<token>``         ``honeypot``: delivery id           hidden link: a click marks the clicker machine
``/u/<token>``         ``unsubscribe``: delivery, prospect GET page with a button; POST unsubscribes
``/p/<token>``         ``preferences``: delivery, prospect pause / less often / unsubscribe
``/v/<token>``         ``view``: delivery, prospect        the mail in a browser
=====================  ================================  ===========================================

Rotation: tokens are always signed with the current secret and verified with it first, then with each of the
previous secrets (``[tracking] previous_secrets``), so links in mails sent before a rotation keep working.

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
import functools
import hashlib
import hmac
import json
import re
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from nurture.core.errors import InputError

if TYPE_CHECKING:
    from nurture.core.config import Config

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


#: Whitespace, control characters, DEL and backslash: never in a redirect target (see is_safe_target).
_UNSAFE_IN_TARGET = re.compile(r"[\x00-\x20\x7f\\]")
_URLSAFE = bytes.maketrans(b"+/", b"-_")
#: Characters json.dumps would escape (with ensure_ascii=False): where none occurs, the payload is built directly.
_JSON_ESCAPED = re.compile(r'[\x00-\x1f"\\]')


def _b64(data: bytes) -> str:
    # base64.urlsafe_b64encode, in one C call plus a translate (this runs ~16 times per mail).
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.lru_cache(maxsize=64)
def _keyed(secret: bytes, purpose: str) -> hmac.HMAC:
    """HMAC-SHA256 with the key and the ``purpose\\0`` prefix already absorbed; copied per token. The key
    schedule is then paid once per (secret, purpose) instead of once per link (~10 links per mail)."""
    return hmac.new(secret, purpose.encode() + b"\x00", hashlib.sha256)


def _mac(secret: bytes, purpose: str, payload: bytes) -> bytes:
    h = _keyed(secret, purpose).copy()
    h.update(payload)
    return h.digest()[:_MAC_BYTES]


def _payload(parts: tuple[object, ...]) -> bytes:
    """The JSON array of ``parts`` as strings: exactly ``json.dumps(..., ensure_ascii=False,
    separators=(",", ":"))``, built directly when no part holds a character JSON escapes (the usual case:
    ids and URLs)."""
    strings = [p if type(p) is str else str(p) for p in parts]
    if _JSON_ESCAPED.search("".join(strings)) is None:
        return ('["' + '","'.join(strings) + '"]').encode() if strings else b"[]"
    return json.dumps(strings, ensure_ascii=False, separators=(",", ":")).encode()


def sign(secret: bytes, purpose: str, *parts: object) -> str:
    """A URL-safe token carrying ``parts`` (as strings) that only holders of ``secret`` can make for ``purpose``."""
    payload = _payload(parts)
    return f"{_b64(payload)}.{_b64(_mac(secret, purpose, payload))}"


def verify(secret: bytes, purpose: str, token: str, previous: tuple[bytes, ...] = ()) -> tuple[str, ...] | None:
    """The parts signed into ``token`` for ``purpose``, or None if it is malformed, forged or for another purpose.

    ``previous``: older secrets (rotation, ``Config.previous_secrets()``) that are tried, in order, only when
    ``secret`` does not verify the token -- the current secret signs nearly every token, so the usual case costs
    one MAC as before. The MAC is compared in constant time (``hmac.compare_digest``) before the payload is parsed.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    try:
        payload = _unb64(body)
        given = _unb64(mac)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(given, _mac(secret, purpose, payload)) and not any(
        hmac.compare_digest(given, _mac(old, purpose, payload)) for old in previous
    ):
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
    if not url or len(url) > 4096 or _UNSAFE_IN_TARGET.search(url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname) and url[len(parts.scheme) :][:3] == "://"


class Links:
    """The signed URLs of mails for one configuration. The base URL, key and mailto address are read once:
    a mail needs about eight signed URLs, and the sending loop makes them for every mail.

    Raises ConfigError (from ``config.tracking_secret()``) when no signing key is configured.
    """

    def __init__(self, config: Config) -> None:
        self.base = config.tracking.base_url.rstrip("/")
        self.secret = config.tracking_secret()
        self.mailto = config.identity.unsubscribe_mailto.strip().removeprefix("mailto:")

    def url(self, purpose: str, *parts: object, suffix: str = "") -> str:
        return f"{self.base}{PATHS[purpose]}{sign(self.secret, purpose, *parts)}{suffix}"

    def for_mail(self, delivery_id: int, prospect_id: int) -> dict[str, str]:
        """The per-mail URLs: ``unsubscribe``, ``preferences``, ``view_in_browser`` and ``open_pixel``."""
        return {
            "unsubscribe": self.url(UNSUBSCRIBE, delivery_id, prospect_id),
            "preferences": self.url(PREFERENCES, delivery_id, prospect_id),
            "view_in_browser": self.url(VIEW, delivery_id, prospect_id),
            "open_pixel": self.url(OPEN, delivery_id, suffix=".gif"),
        }

    def click(self, delivery_id: int, index: int, url: str) -> str:
        """The tracked link for the ``index``-th link (``url``) of a delivery's mail.

        Raises InputError for a target the tracking server would refuse to redirect to (see
        :func:`is_safe_target`), so a bad link is caught when the mail is built rather than when the prospect
        clicks.
        """
        if not is_safe_target(url):
            raise InputError(
                f"link {index} ({url!r}) cannot be click-tracked: only absolute http(s) URLs without "
                "spaces, control characters or backslashes can be redirected to",
                hint='fix the link in the template, or mark it data-nurture="no-track"',
            )
        return self.url(CLICK, delivery_id, index, url)

    def honeypot(self, delivery_id: int) -> str:
        """A link hidden from people (the renderer places it invisibly); whatever follows it is a machine."""
        return self.url(HONEYPOT, delivery_id)

    def list_unsubscribe(
        self, delivery_id: int, prospect_id: int, *, unsubscribe_url: str | None = None
    ) -> dict[str, str]:
        """``List-Unsubscribe`` (https, plus mailto when ``[identity] unsubscribe_mailto`` is set) and
        ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058 section 3; RFC 2369 3.2 for the
        ``<...>, <...>`` list). The https URL is the same as the unsubscribe link in the body: a GET shows a
        page, the one-click POST unsubscribes. Pass ``unsubscribe_url`` (``for_mail(...)["unsubscribe"]`` of
        the same delivery and prospect) to reuse it instead of signing it again."""
        https = unsubscribe_url or self.url(UNSUBSCRIBE, delivery_id, prospect_id)
        targets = [f"<{https}>"]
        if self.mailto:
            token = https.rpartition("/")[2]  # the token of the https URL: same purpose, same parts
            targets.append(f"<mailto:{self.mailto}?subject={quote('unsubscribe ' + token)}>")
        return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": ONE_CLICK_BODY}


# One-call forms of the Links methods, for code that makes the URLs of a single mail (the web pages, previews).


def urls_for(config: Config, delivery_id: int, prospect_id: int) -> dict[str, str]:
    """:meth:`Links.for_mail`."""
    return Links(config).for_mail(delivery_id, prospect_id)


def click_url(config: Config, delivery_id: int, index: int, url: str) -> str:
    """:meth:`Links.click`."""
    return Links(config).click(delivery_id, index, url)


def honeypot_url(config: Config, delivery_id: int) -> str:
    """:meth:`Links.honeypot`."""
    return Links(config).honeypot(delivery_id)


def list_unsubscribe_headers(config: Config, delivery_id: int, prospect_id: int) -> dict[str, str]:
    """:meth:`Links.list_unsubscribe`."""
    return Links(config).list_unsubscribe(delivery_id, prospect_id)


def token_from_path(path_segment: str, purpose: str) -> str:
    """The token in a URL path segment (strips the ``.gif`` of open pixels)."""
    return path_segment.removesuffix(".gif") if purpose == OPEN else path_segment
