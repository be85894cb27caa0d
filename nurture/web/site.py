"""What every route of the tracking server is given: a :class:`Site`, built once by
:func:`~nurture.web.app.create_app` and passed to each route module explicitly, and :class:`Pages`, the renderer
of the server's own HTML pages.

Pages speak the mail's language: :func:`page_language` takes the first of the languages a route knows (the
delivery's, then the prospect's) that the pages have, else the browser's Accept-Language, else Japanese.
"""

from __future__ import annotations

import logging
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import HTMLResponse

from nurture.core.config import Config, IdentityConfig
from nurture.track import EventBuffer
from nurture.web.viewer import MailViewer

log = logging.getLogger("nurture.web")

TEMPLATES = Path(__file__).parent / "templates"
#: The languages the pages are written in (``templates/strings.toml`` has one table each).
LANGUAGES = ("ja", "en")
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}
#: Headers of every page the server renders itself.
PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Our pages have no scripts; forms post only to ourselves.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Robots-Tag": "noindex, nofollow",
}


def page_strings() -> dict[str, dict[str, str]]:
    """The texts of the pages, ``{language: {key: text}}``, from ``templates/strings.toml``."""
    with (TEMPLATES / "strings.toml").open("rb") as fh:
        return tomllib.load(fh)


def page_language(request: Request, *preferred: str) -> str:
    """The first of ``preferred`` (language codes, maybe empty or regional: ``""``, ``"en-US"``) the pages are
    written in; else the first such language in the request's Accept-Language; else ``"ja"``."""
    for code in preferred:
        lang = code[:2].lower()
        if lang in LANGUAGES:
            return lang
    accept = request.headers.get("accept-language", "").lower()
    for part in accept.split(","):
        code = part.split(";")[0].strip()[:2]
        if code in LANGUAGES:
            return code
    return "ja"


class Pages:
    """The server's HTML pages: sandboxed, autoescaped Jinja templates in ``templates/``, texts per language from
    ``strings.toml``, the sender's identity on every page, and :data:`PAGE_HEADERS` plus :data:`NO_STORE` on
    every answer. Templates are loaded once and rendering is thread-safe."""

    def __init__(self, identity: IdentityConfig) -> None:
        self.identity = identity
        self.strings = page_strings()
        self._env = SandboxedEnvironment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))

    def page(self, name: str, lang: str, title_key: str, status: int = 200, **context: Any) -> HTMLResponse:
        """Template ``name`` in ``lang``, titled by the text ``title_key``; ``context`` goes to the template."""
        t = self.strings[lang]
        html = self._env.get_template(name).render(
            lang=lang, t=t, title=t[title_key], org=self.identity.organization, inquiry=self.identity.inquiry, **context
        )
        return HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, **NO_STORE})

    def message(self, lang: str, title_key: str, *paragraphs: str, status: int = 200) -> HTMLResponse:
        """A page of plain ``paragraphs`` (already in ``lang``)."""
        return self.page("message.html", lang, title_key, status, paragraphs=list(paragraphs))

    def not_found(self, request: Request) -> HTMLResponse:
        """404 for a bad or tampered token, in the browser's language."""
        lang = page_language(request)
        return self.message(lang, "not_found_title", self.strings[lang]["not_found_lead"], status=404)

    def bad_request(self, lang: str) -> HTMLResponse:
        """400 for a form the pages did not send."""
        return self.message(lang, "bad_request_title", self.strings[lang]["bad_request_lead"], status=400)


@dataclass(frozen=True)
class Site:
    """The tracking server's state, made once per app: nothing in it is reloaded while the server runs."""

    config: Config
    #: ``[tracking] secret``: the key every token is checked with (first).
    secret: bytes
    engine: Engine
    #: Where opens and clicks wait to be written (a background thread writes them).
    buffer: EventBuffer
    pages: Pages
    #: The campaigns as loaded at start, for ``/v``.
    viewer: MailViewer
    #: ``[tracking] previous_secrets``: tokens signed before a rotation still verify with these.
    previous: tuple[bytes, ...] = ()
    #: Page tokens (``/u``, ``/p``) refused since start, by purpose (see :meth:`token_refused`).
    refused: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def token_refused(self, purpose: str, path: str) -> int:
        """Count and log (a warning) a page token that no secret verifies; the count for ``purpose`` so far. The
        token itself stays out of the log (it is the person's key); its length says whether it was cut off."""
        with self._lock:
            count = self.refused[purpose] = self.refused.get(purpose, 0) + 1
        token = path.rpartition("/")[2]
        log.warning(
            "%s link refused: its token (%d characters) is verified by no secret (%d refused since start); "
            "the page offers the opt-out by address. Rotated the secret? Keep the old one in "
            "[tracking] previous_secrets",
            purpose,
            len(token),
            count,
        )
        return count
