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
``/v/<token>``             GET     the mail re-rendered now (campaign, item and template still exist; no
                                   tracking in it), else a page saying when it was sent and where it is
``/webhooks/sendgrid``     POST    signed SendGrid Event Webhook
``/healthz``               GET     200 ``{"status": "ok"}`` when the database answers, else 503
=========================  ======  ========================================================================

Every database write goes through :func:`nurture.track.events.record_events`. Opens and clicks are queued in an
:class:`~nurture.track.events.EventBuffer` and written in batches (every 100 ms or 250 events) by a background thread
(the pixel never waits for the database); unsubscribes, preference changes and webhooks are written before
the answer. The buffer is flushed on shutdown (SIGTERM / Ctrl-C); a ``kill -9`` loses the opens and clicks of
at most the last ~100 ms (plus any backlog, which ``/healthz`` reports as ``pending_events``).

The pixel and valid click redirects are answered by :class:`HotPaths`, a raw ASGI layer in front of Starlette
(the framework's routing and request objects cost more than the work); everything else is plain Starlette.

GET requests and opens never change a prospect (link scanners and image proxies fetch URLs by themselves).
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import email.policy
import logging
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from jinja2 import FileSystemLoader, select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from nurture.compose import links as tracking
from nurture.core import clock
from nurture.core.config import Config
from nurture.store import db
from nurture.store.models import Delivery, Prospect
from nurture.track import events as ev
from nurture.track.events import EventBuffer, NewEvent
from nurture.track.webhooks import WebhookRejected, make_webhook

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
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


#: For a re-rendered mail: images and styles from anywhere (mail HTML is built that way), nothing active.
_MAIL_HEADERS = {
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline' https:; "
                               "font-src https: data:; form-action 'none'; frame-ancestors 'none'",
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


MAX_FORM_BYTES = 10_000


def form_fields(content_type: str, body: bytes) -> dict[str, list[str]]:
    """The fields of a form POST, ``application/x-www-form-urlencoded`` or ``multipart/form-data``.

    RFC 8058 section 3: the one-click POST "SHOULD" be multipart/form-data and "MAY" be urlencoded, so both
    are read (multipart with the standard library's MIME parser: no extra dependency for a one-field form).
    """
    if content_type.lower().startswith("multipart/form-data"):
        message = BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body)
        fields: dict[str, list[str]] = {}
        if message.is_multipart():
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if isinstance(name, str):
                    payload = part.get_payload(decode=True) or b""
                    fields.setdefault(name, []).append(payload.decode("utf-8", "replace"))
        return fields
    return parse_qs(body.decode("utf-8", "replace"))


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
    campaigns: dict[str, tuple[float, Any]] = {}
    renderers: dict[str, Any] = {}

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

    def campaign(name: str) -> Any | None:
        """The campaign file ``name`` as loaded by nurture.plan.campaigns, cached per file modification time;
        None if it is missing or broken (a broken campaign file must not break the unsubscribe page)."""
        if not name:
            return None
        path = config.campaigns_dir / f"{name}.toml"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None
        cached = campaigns.get(name)
        if cached and cached[0] == mtime:
            return cached[1]
        try:
            from nurture.plan.campaigns import load_campaign

            loaded = load_campaign(path, config)
        except Exception:
            log.warning("cannot read campaign %s", name, exc_info=True)
            loaded = None
        campaigns[name] = (mtime, loaded)
        return loaded

    def campaign_language(name: str) -> str | None:
        loaded = campaign(name)
        return loaded.language if loaded is not None else None

    def rerender(who: Recipient, delivery_id: int) -> str | None:
        """The mail as it would be rendered now (the template may have changed since it was sent), without
        tracking: links go straight to their targets and there is no pixel. None if it cannot be rendered."""
        loaded = campaign(who.campaign)
        item = next((i for i in loaded.content.items if i.key == who.item_key), None) if loaded else None
        if item is None or who.status == "erased":
            return None
        try:
            from nurture.compose.rendering import Renderer, build_context

            with engine.connect() as conn:
                person = conn.execute(select(Prospect).where(Prospect.id == who.prospect_id)).mappings().one()
            if "renderer" not in renderers:
                renderers["renderer"] = Renderer(config.templates_dir)
            context = build_context(config, loaded, item, person,
                                    tracking.urls_for(config, delivery_id, who.prospect_id))
            return renderers["renderer"].render(item, context).html
        except Exception:
            log.warning("cannot re-render delivery %s for the browser", delivery_id, exc_info=True)
            return None

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

    async def addressee(request: Request, purpose: str) -> tuple[int, int, Recipient | None, str] | None:
        """(delivery id, prospect id, who, page language) from the URL's token; None if the token is bad."""
        found = ids(purpose, request.path_params["token"])
        if found is None:
            return None
        who = await run_in_threadpool(recipient, *found)
        return found[0], found[1], who, language_of(request, who)

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
        return form_fields(request.headers.get("content-type", ""), body[:MAX_FORM_BYTES])

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
        found = await addressee(request, tracking.UNSUBSCRIBE)
        if found is None:
            return not_found(request)
        delivery_id, prospect_id, who, lang = found
        address = mask_address(who.email) if who else ""
        if request.method == "POST":
            # RFC 8058 section 3: the one-click POST carries exactly this key and value; the page's button
            # posts the same, so there is one way to unsubscribe.
            if (await form(request)).get("List-Unsubscribe") != ["One-Click"]:
                return page("message.html", lang, "bad_request_title", 400,
                            paragraphs=[strings[lang]["bad_request_lead"]])
            if who is not None:
                await run_in_threadpool(ev.record_event, engine, NewEvent(
                    ev.UNSUBSCRIBED, clock.now(), "web", delivery_id=delivery_id or None, prospect_id=prospect_id,
                    user_agent=request.headers.get("user-agent", ""),
                    ip=request.client.host if request.client else "",
                    data={"via": "page" if "text/html" in request.headers.get("accept", "") else "one-click"}))
            # 200 and a page, never a redirect (RFC 8058 section 3).
            return page("unsubscribe.html", lang, "unsubscribed_title", state="done", address=address)
        if who is not None and who.status != "active":
            return page("unsubscribe.html", lang, "already_title", state="already", address=address)
        return page("unsubscribe.html", lang, "unsubscribe_title", state="confirm", address=address,
                    action=request.url.path,
                    preferences_url=tracking.urls_for(config, delivery_id, prospect_id)["preferences"])

    async def preferences(request: Request) -> Response:
        found = await addressee(request, tracking.PREFERENCES)
        if found is None:
            return not_found(request)
        delivery_id, prospect_id, who, lang = found
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
        found = await addressee(request, tracking.VIEW)
        if found is None:
            return not_found(request)
        delivery_id, _, who, lang = found
        t = strings[lang]
        if who is None or not who.campaign:
            return page("message.html", lang, "view_title", paragraphs=[t["view_preview"]])
        html = await run_in_threadpool(rerender, who, delivery_id)
        if html is not None:
            return HTMLResponse(html, headers={**NO_STORE, **_MAIL_HEADERS})
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
