"""The tracking server: open pixel, click redirects, one-click unsubscribe, preferences, view in browser, provider
webhooks and a health check — a Starlette app built by :func:`create_app` and run by ``nurture serve``.

=========================  ======  ========================================================================
path                       method  behaviour
=========================  ======  ========================================================================
``/o/<token>.gif``         GET     1x1 GIF, always, fast, even for bad tokens (which record nothing)
``/c/<token>``             GET     302 to the signed target URL; tampered token or unsafe target -> 404
``/h/<token>``             GET     honeypot: 200, records a machine click
``/u/<token>``             GET     page in the mail's language with a button; never unsubscribes
``/u/<token>``             POST    body ``List-Unsubscribe=One-Click`` (RFC 8058): unsubscribes now, 200, no
                                   redirect
``/p/<token>``             GET/POST  pause N months / mail less often / unsubscribe
``/v/<token>``             GET     the mail re-rendered when the campaign and template still exist, else a page
                                   saying where it is
``/webhooks/sendgrid``     POST    signed SendGrid Event Webhook
``/healthz``               GET     200 ``{"status": "ok"}`` when the database answers, else 503
=========================  ======  ========================================================================

Every database write goes through :func:`nurture.events.record_events`. Opens and clicks are queued in an
:class:`~nurture.events.EventBuffer` and written in batches every 100 ms by a background thread (the pixel
never waits for the database); unsubscribes, preference changes and webhooks are written before the answer.
The buffer is flushed on shutdown; a ``kill -9`` loses at most the last ~100 ms of opens and clicks.

GET requests and opens never change a prospect (link scanners and image proxies fetch URLs by themselves).
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import logging
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from jinja2 import FileSystemLoader, select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from nurture import clock, db, tracking
from nurture import events as ev
from nurture.config import Config
from nurture.events import EventBuffer, NewEvent
from nurture.models import Delivery, Prospect
from nurture.webhooks import WebhookRejected, make_webhook

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates_web"
LANGUAGES = ("ja", "en")
#: The smallest transparent GIF (43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}
PAUSE_MONTHS = (1, 3, 6, 12)
FREQUENCY_FACTORS = (2, 3)
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Our pages have no scripts; forms post only to ourselves.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Robots-Tag": "noindex, nofollow",
}


def _strings() -> dict[str, dict[str, str]]:
    with (TEMPLATES / "strings.toml").open("rb") as fh:
        return tomllib.load(fh)


@dataclass
class Recipient:
    """Who a page is about: read from the database for the GET pages (reads never write)."""

    prospect_id: int
    email: str
    status: str
    language: str
    campaign: str
    subject: str
    sent_at: datetime | None
    item_key: str


def mask_address(email: str) -> str:
    """``t***@example.co.jp``: enough to recognise one's own address on a page anyone with the link can see."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def add_months(instant: datetime, months: int) -> datetime:
    """Same day ``months`` later (clamped to the month's last day: Jan 31 + 1 month = Feb 28/29)."""
    month0 = instant.month - 1 + months
    year, month = instant.year + month0 // 12, month0 % 12 + 1
    return instant.replace(year=year, month=month, day=min(instant.day, calendar.monthrange(year, month)[1]))


class HotPaths:
    """Raw ASGI for the two endpoints hit thousands of times a second: the open pixel and valid click redirects.

    Starlette's routing, Request and Response objects cost more than the work itself here, so these requests are
    answered straight from the ASGI scope (about twice the throughput, see bench/track.py). Everything else —
    including clicks with a bad token or an unsafe target, which get the 404 page — goes on to the app.
    """

    def __init__(self, app: ASGIApp, secret: bytes, buffer: EventBuffer) -> None:
        self.app = app
        self.secret = secret
        self.buffer = buffer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path: str = scope["path"]
            if path.startswith("/o/"):
                parts = tracking.verify(self.secret, tracking.OPEN, path[3:].removesuffix(".gif"))
                if parts and len(parts) == 1 and parts[0].isdigit():
                    self._hit(scope, ev.OPENED, int(parts[0]), "pixel", "", {})
                await send({"type": "http.response.start", "status": 200, "headers": _PIXEL_HEADERS})
                await send({"type": "http.response.body", "body": PIXEL})
                return
            if path.startswith("/c/"):
                parts = tracking.verify(self.secret, tracking.CLICK, path[3:])
                if parts and len(parts) == 3 and parts[0].isdigit() and tracking.is_safe_target(parts[2]):
                    index = parts[1]
                    self._hit(scope, ev.CLICKED, int(parts[0]), "link", parts[2],
                              {"link_index": int(index) if index.isdigit() else index})
                    # Location must be ASCII (RFC 9110 10.2.2, RFC 3986): percent-encode an IRI's non-ASCII.
                    location = quote(parts[2], safe=":/?#[]@!$&'()*+,;=%~-._").encode("ascii")
                    await send({"type": "http.response.start", "status": 302,
                                "headers": [(b"location", location), *_REDIRECT_HEADERS]})
                    await send({"type": "http.response.body", "body": b""})
                    return
        await self.app(scope, receive, send)

    def _hit(self, scope: Scope, kind: str, delivery_id: int, source: str, url: str, data: dict[str, Any]) -> None:
        if delivery_id <= 0:  # a preview link: nothing to record against
            return
        agent = ""
        for name, value in scope["headers"]:
            if name == b"user-agent":
                agent = value.decode("latin-1")
                break
        client = scope.get("client")
        self.buffer.add(NewEvent(kind, clock.now(), source, delivery_id=delivery_id, user_agent=agent,
                                 ip=client[0] if client else "", method=scope["method"], url=url, data=data))


_PIXEL_HEADERS = [(b"content-type", b"image/gif"), (b"content-length", str(len(PIXEL)).encode()),
                  *((k.lower().encode(), v.encode()) for k, v in NO_STORE.items())]
_REDIRECT_HEADERS = [(b"content-length", b"0"), (b"referrer-policy", b"no-referrer"),
                     *((k.lower().encode(), v.encode()) for k, v in NO_STORE.items())]


def create_app(config: Config, *, engine: Engine | None = None, flush_interval: float = 0.1) -> Starlette:
    """The tracking app for ``config``. Raises ConfigError now (not on the first request) for a missing
    tracking secret or a bad webhook key."""
    secret = config.tracking_secret()
    engine = engine or db.engine_for(config.database_url)
    buffer = EventBuffer(engine, interval=flush_interval)
    sendgrid = make_webhook("sendgrid", config)
    strings = _strings()
    env = SandboxedEnvironment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    identity = config.identity
    campaign_languages: dict[str, tuple[float, str]] = {}

    # -- helpers ------------------------------------------------------------------------------------------------

    def page(name: str, lang: str, title_key: str, status: int = 200, **context: Any) -> HTMLResponse:
        t = strings[lang]
        html = env.get_template(name).render(lang=lang, t=t, title=t[title_key], org=identity.organization,
                                             inquiry=identity.inquiry, **context)
        return HTMLResponse(html, status_code=status, headers={**_SECURITY_HEADERS, **NO_STORE})

    def language_of(request: Request, recipient: Recipient | None) -> str:
        if recipient is not None:
            lang = campaign_language(recipient.campaign) or recipient.language[:2].lower()
            if lang in LANGUAGES:
                return lang
        accept = request.headers.get("accept-language", "").lower()
        for part in accept.split(","):
            code = part.split(";")[0].strip()[:2]
            if code in LANGUAGES:
                return code
        return "ja"

    def campaign_language(name: str) -> str | None:
        """The ``language`` of the campaign file, cached per file modification time."""
        if not name:
            return None
        path = config.campaigns_dir / f"{name}.toml"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None
        cached = campaign_languages.get(name)
        if cached and cached[0] == mtime:
            return cached[1]
        try:
            from nurture.campaigns import load_campaign

            language = load_campaign(path, config).language
        except Exception:  # a broken campaign file must not break the unsubscribe page
            log.warning("cannot read the language of campaign %s", name, exc_info=True)
            return None
        campaign_languages[name] = (mtime, language)
        return language

    def recipient(delivery_id: int, prospect_id: int) -> Recipient | None:
        with engine.connect() as conn:
            p = conn.execute(select(Prospect.id, Prospect.email, Prospect.status, Prospect.language)
                             .where(Prospect.id == prospect_id)).first() if prospect_id else None
            d = conn.execute(select(Delivery.campaign, Delivery.subject, Delivery.sent_at, Delivery.item_key)
                             .where(Delivery.id == delivery_id)).first() if delivery_id else None
        if p is None:
            return None
        return Recipient(p.id, p.email, p.status, p.language or "", d.campaign if d else "",
                         d.subject if d else "", d.sent_at if d else None, d.item_key if d else "")

    def ids(purpose: str, token: str) -> tuple[int, int] | None:
        parts = tracking.verify(secret, purpose, tracking.token_from_path(token, purpose))
        try:
            return (int(parts[0]), int(parts[1])) if parts and len(parts) == 2 else None
        except ValueError:
            return None

    def not_found(request: Request) -> HTMLResponse:
        return page("message.html", language_of(request, None), "not_found_title", 404,
                    paragraphs=[strings[language_of(request, None)]["not_found_lead"]])

    def hit(request: Request, kind: str, delivery_id: int, **fields: Any) -> None:
        if delivery_id <= 0:  # a preview link: nothing to record against
            return
        buffer.add(NewEvent(kind, clock.now(), "link", delivery_id=delivery_id,
                            user_agent=request.headers.get("user-agent", ""),
                            ip=request.client.host if request.client else "", method=request.method, **fields))

    async def form(request: Request) -> dict[str, list[str]]:
        body = await request.body()
        return parse_qs(body[:10_000].decode("utf-8", "replace"))

    # -- endpoints ----------------------------------------------------------------------------------------------

    async def click_refused(request: Request) -> Response:
        # Valid clicks never get here: HotPaths answers them. A tampered token or unsafe target: 404, no redirect.
        return not_found(request)

    async def honeypot(request: Request) -> Response:
        parts = tracking.verify(secret, tracking.HONEYPOT, request.path_params["token"])
        if not parts or len(parts) != 1 or not parts[0].isdigit():
            return not_found(request)
        hit(request, ev.CLICKED, int(parts[0]), data={"honeypot": True})
        return PlainTextResponse("", headers={**NO_STORE, "X-Robots-Tag": "noindex, nofollow"})

    async def unsubscribe(request: Request) -> Response:
        token = request.path_params["token"]
        found = ids(tracking.UNSUBSCRIBE, token)
        if found is None:
            return not_found(request)
        delivery_id, prospect_id = found
        if request.method == "POST":
            fields = await form(request)
            # RFC 8058 section 3.1: the one-click POST carries exactly this key and value.
            if fields.get("List-Unsubscribe") != ["One-Click"]:
                lang = language_of(request, None)
                return page("message.html", lang, "bad_request_title", 400,
                            paragraphs=[strings[lang]["bad_request_lead"]])
            who = await run_in_threadpool(recipient, delivery_id, prospect_id)
            if who is not None:
                await run_in_threadpool(ev.record_event, engine, NewEvent(
                    ev.UNSUBSCRIBED, clock.now(), "web", delivery_id=delivery_id or None, prospect_id=prospect_id,
                    user_agent=request.headers.get("user-agent", ""),
                    ip=request.client.host if request.client else "",
                    data={"via": "one-click" if "text/html" not in request.headers.get("accept", "")
                          else "page"}))
            lang = language_of(request, who)
            return page("unsubscribe.html", lang, "unsubscribed_title", state="done",
                        address=mask_address(who.email) if who else "")
        who = await run_in_threadpool(recipient, delivery_id, prospect_id)
        lang = language_of(request, who)
        if who is not None and who.status != "active":
            return page("unsubscribe.html", lang, "already_title", state="already", address=mask_address(who.email))
        urls = tracking.urls_for(config, delivery_id, prospect_id)
        return page("unsubscribe.html", lang, "unsubscribe_title", state="confirm",
                    address=mask_address(who.email) if who else "", action=request.url.path,
                    preferences_url=urls["preferences"])

    async def preferences(request: Request) -> Response:
        found = ids(tracking.PREFERENCES, request.path_params["token"])
        if found is None:
            return not_found(request)
        delivery_id, prospect_id = found
        who = await run_in_threadpool(recipient, delivery_id, prospect_id)
        lang = language_of(request, who)
        t = strings[lang]
        message = ""
        if request.method == "POST":
            choice = (await form(request)).get("choice", [""])[0]
            kind, _, value = choice.partition(":")
            now = clock.now()
            if kind == "pause" and value.isdigit() and int(value) in PAUSE_MONTHS:
                until = add_months(now, int(value))
                event = NewEvent(ev.PAUSED, now, "web", delivery_id=delivery_id or None, prospect_id=prospect_id,
                                 data={"paused_until": until.isoformat(), "months": int(value)})
                message = t["paused_done"].format(until=until.date().isoformat())
            elif kind == "less" and value.isdigit() and (int(value) in FREQUENCY_FACTORS or value == "1"):
                event = NewEvent(ev.FREQUENCY_CHANGED, now, "web", delivery_id=delivery_id or None,
                                 prospect_id=prospect_id, data={"frequency_factor": float(value)})
                message = t["less_done"]
            else:
                return page("message.html", lang, "bad_request_title", 400, paragraphs=[t["bad_request_lead"]])
            if who is not None:
                await run_in_threadpool(ev.record_event, engine, event)
        urls = tracking.urls_for(config, delivery_id, prospect_id)
        return page("preferences.html", lang, "preferences_title", message=message,
                    address=mask_address(who.email) if who else "", action=request.url.path,
                    unsubscribe_url=urls["unsubscribe"], pause_choices=PAUSE_MONTHS,
                    frequency_choices=FREQUENCY_FACTORS)

    async def view(request: Request) -> Response:
        found = ids(tracking.VIEW, request.path_params["token"])
        if found is None:
            return not_found(request)
        delivery_id, prospect_id = found
        who = await run_in_threadpool(recipient, delivery_id, prospect_id)
        lang = language_of(request, who)
        t = strings[lang]
        if who is None or not who.campaign:
            return page("message.html", lang, "view_title", paragraphs=[t["view_preview"]])
        when = who.sent_at.date().isoformat() if who.sent_at else "-"
        return page("message.html", lang, "view_title", paragraphs=[
            t["view_lead"].format(subject=who.subject, date=when, address=mask_address(who.email))])

    async def webhook(request: Request) -> Response:
        body = await request.body()
        try:
            events = sendgrid.events(request.headers, body)
        except WebhookRejected as exc:
            log.warning("sendgrid webhook refused (%s): %s", exc.status, exc.reason)
            return PlainTextResponse(exc.reason, status_code=exc.status)
        try:
            result = await run_in_threadpool(ev.record_events, engine, events)
        except Exception as exc:  # SQL and its parameters stay out of the log
            log.error("recording %d sendgrid events failed; SendGrid will retry: %s", len(events),
                      str(exc).split("\n", 1)[0][:300])
            return PlainTextResponse("temporarily unable to record events", status_code=503)
        return JSONResponse({"received": len(events), "inserted": result.inserted,
                             "duplicates": result.duplicates})

    async def healthz(request: Request) -> Response:
        try:
            await run_in_threadpool(db.ping, engine)
        except Exception as exc:
            return JSONResponse({"status": "database unreachable", "error": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "pending_events": buffer.pending})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        buffer.start()
        try:
            yield
        finally:
            await run_in_threadpool(buffer.close)

    app = Starlette(routes=[
        Route("/c/{token}", click_refused, methods=["GET"]),
        Route("/h/{token}", honeypot, methods=["GET"]),
        Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/p/{token}", preferences, methods=["GET", "POST"]),
        Route("/v/{token}", view, methods=["GET"]),
        Route("/webhooks/sendgrid", webhook, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ], middleware=[Middleware(HotPaths, secret=secret, buffer=buffer)], lifespan=lifespan)
    app.state.buffer = buffer
    app.state.engine = engine
    return app
