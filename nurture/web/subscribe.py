"""Sign-up: the hosted page ``/subscribe``, the form token the embedded snippet fetches, and the double opt-in
confirmation ``/s/<token>`` (served when ``[subscribe] enabled = true``).

=============================  =========  ==================================================================
path                           method     behaviour
=============================  =========  ==================================================================
``/subscribe``                 GET        the form, ja/en by ``?lang=`` or Accept-Language, with a fresh token
``/subscribe``                 POST       a sign-up: the same "check your mail" page whatever happened
``/subscribe``, ``/subscribe/token``  OPTIONS  CORS preflight, for ``[subscribe] allowed_origins`` only
``/subscribe/token``           GET        ``{"token": ...}`` for the snippet's script (CORS: allowed origins)
``/s/<token>``                 GET        a page with a "confirm" button; never confirms (mail scanners fetch links)
``/s/<token>``                 POST       confirms: the prospect becomes active (nurture.people.signup)
=============================  =========  ==================================================================

Against forgery (CSRF) and bots, a POST is kept only when: its ``Origin`` (if the browser sent one) is the server's
own or an allowed origin (else 403); its form token, signed with the tracking secret over (form id, issued at), is
valid and at least ``min_fill_seconds`` and at most ``max_form_age_hours`` old; the honeypot field is empty; and
the client IP has not passed ``per_ip_per_hour``. A bot (honeypot, too fast) gets the success page and nothing is
kept. A form without a valid token (a snippet on a page without JavaScript, an old page) is shown again, filled in,
with a fresh token: one more click sends it.

Whatever the address (new, pending, already subscribed, suppressed), the answer is the same page: the form never
tells a stranger who is on the list. Confirmation mails: at most one per address per ``resend_minutes`` (kept in
the database, :func:`nurture.people.signup.request_signup`) and ``mails_per_minute`` in all (per process, the
:class:`~nurture.web.optout.RequestLimiter` of ``/stop``), sent through the configured sender like ``/stop``'s.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nurture.checks.preflight import is_real_sender, require_preflight
from nurture.compose import links as tracking
from nurture.compose.message import OutgoingMessage, domain_of
from nurture.core import clock
from nurture.core.config import Config
from nurture.deliver.senders import make_sender
from nurture.people.signup import LIMITS, SignUp, confirm_signup, pending_for, request_signup
from nurture.web.forms import read_form
from nurture.web.limits import SUBSCRIBE_LIMIT
from nurture.web.optout import RequestLimiter, legal_footer, mail_html, normalise_address, sender_name
from nurture.web.pages import mask_address
from nurture.web.site import LANGUAGES, Site, page_language

log = logging.getLogger(__name__)

FIELD_STYLE = (
    "font: inherit; width: 100%; box-sizing: border-box; padding: .5rem; border: 1px solid #d0d7de; border-radius: 6px"
)
HONEYPOT_FIELD = "website"
TEXT_LIMIT = 1000  # characters of the free text kept (the textarea says so too)


def offered_topics(campaigns: Any) -> list[str]:
    """The topics of the active campaigns (``topic = "..."``), in a stable order: what the form offers."""
    return sorted({c.topic for c in campaigns if getattr(c, "topic", "") and c.status == "active"})


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass
class SignupDesk:
    """What ``/subscribe`` keeps per server process: the topics offered and the limiters."""

    site: Site
    topics: list[str]
    per_ip: RequestLimiter
    mails: RequestLimiter

    @property
    def config(self) -> Config:
        return self.site.config

    def allowed_origins(self, request: Request) -> set[str]:
        own = {origin_of(self.config.tracking.base_url), origin_of(str(request.base_url))}
        return own | {o.rstrip("/").lower() for o in self.config.subscribe.allowed_origins}

    def form_token(self, form_id: str) -> str:
        return tracking.sign(self.site.secret, tracking.FORM, form_id, int(clock.now().timestamp()))


def cors_headers(desk: SignupDesk, request: Request) -> dict[str, str]:
    """``Access-Control-Allow-Origin`` for a listed origin (never ``*``: only the company's own pages may read the
    answers), with ``Vary: Origin`` so caches keep them apart."""
    origin = request.headers.get("origin", "")
    if origin and origin.rstrip("/").lower() in desk.allowed_origins(request):
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {"Vary": "Origin"}


async def preflight(desk: SignupDesk, request: Request) -> Response:
    """The CORS preflight: 204 with the allowed method and header for a listed origin, 403 otherwise."""
    headers = cors_headers(desk, request)
    if "Access-Control-Allow-Origin" not in headers:
        return Response(status_code=403, headers=headers)
    headers.update(
        {
            "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "600",
        }
    )
    return Response(status_code=204, headers=headers)


async def token(desk: SignupDesk, request: Request) -> Response:
    """A fresh form token for the snippet (``?form=<id>``), readable by allowed origins only."""
    form_id = request.query_params.get("form", desk.config.subscribe.form_id)[:100] or desk.config.subscribe.form_id
    return JSONResponse(
        {"token": desk.form_token(form_id), "min_fill_seconds": desk.config.subscribe.min_fill_seconds},
        headers={**cors_headers(desk, request), "Cache-Control": "no-store"},
    )


def form_page(
    desk: SignupDesk,
    lang: str,
    *,
    values: dict[str, Any] | None = None,
    error: str = "",
    status: int = 200,
    form_id: str = "",
) -> Response:
    s = desk.config.subscribe
    shown = {"email": "", "name": "", "company": "", "title": "", "industry": "", "text": "", "topics": []}
    shown.update(values or {})
    return desk.site.pages.page(
        "subscribe.html",
        lang,
        "subscribe_title",
        status,
        token=desk.form_token(form_id or s.form_id),
        values=shown,
        error=error,
        industries=s.industries,
        topics=desk.topics,
        wording=wording(desk.config, lang),
        field_style=FIELD_STYLE,
    )


def wording(config: Config, lang: str) -> str:
    """The consent text shown in ``lang`` (the other language's if ``lang`` has none)."""
    words = config.subscribe.consent_wording
    return words.get(lang) or next(iter(words.values()), "")


def wording_digest(text: str) -> str:
    """A short digest of the consent wording a form showed (the snippet carries it in the ``shown`` field)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def chosen_language(request: Request, form: dict[str, list[str]] | None = None) -> str:
    asked = (form or {}).get("lang", [""])[0] or request.query_params.get("lang", "")
    return asked if asked in LANGUAGES else page_language(request)


async def show(desk: SignupDesk, request: Request) -> Response:
    return form_page(desk, chosen_language(request))


def sent_page(desk: SignupDesk, request: Request, lang: str, address: str) -> Response:
    """The one answer to every accepted-looking sign-up (JSON for a script that asked for it)."""
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"status": "ok"}, headers=cors_headers(desk, request))
    t = desk.site.pages.strings[lang]
    return desk.site.pages.message(lang, "subscribe_sent_title", t["subscribe_sent_lead"].format(address=address))


async def submit(desk: SignupDesk, request: Request) -> Response:
    """A sign-up (see the module docstring for what is checked, in this order)."""
    origin = request.headers.get("origin", "")
    if origin and origin != "null" and origin.rstrip("/").lower() not in desk.allowed_origins(request):
        log.warning("sign-up refused: Origin %s is not in [subscribe] allowed_origins", origin[:200])
        return Response("origin not allowed\n", status_code=403, media_type="text/plain")
    form = await read_form(request, SUBSCRIBE_LIMIT)
    lang = chosen_language(request, form)
    t = desk.site.pages.strings[lang]
    s = desk.config.subscribe

    def one(name: str, limit: int = 320) -> str:
        return form.get(name, [""])[0].strip()[:limit]

    values: dict[str, Any] = {
        "email": one("email"),
        "name": one("name", LIMITS["name"]),
        "company": one("company", LIMITS["company"]),
        "title": one("title", LIMITS["title"]),
        "industry": one("industry", LIMITS["industry"]),
        "text": form.get("text", [""])[0].strip()[:TEXT_LIMIT],
        "topics": [v for v in form.get("topic", []) if v in desk.topics],
    }
    address = normalise_address(values["email"])
    shown_address = values["email"][:254]
    if one(HONEYPOT_FIELD):
        log.info("sign-up dropped: the honeypot field was filled")
        return sent_page(desk, request, lang, shown_address)
    parts = tracking.verify(desk.site.secret, tracking.FORM, one("token", 1000), desk.site.previous)
    form_id = parts[0] if parts and len(parts) == 2 else ""
    try:
        issued = float(parts[1]) if parts and len(parts) == 2 else None
    except ValueError:
        issued = None
    age = clock.now().timestamp() - issued if issued is not None else None
    if age is None or age > s.max_form_age_hours * 3600 or age < -60:
        # No valid token (no JavaScript on the embedding page, an old page): the form again, filled in.
        return form_page(desk, lang, values=values, error=t["subscribe_again"], status=400, form_id=form_id)
    if age < s.min_fill_seconds:
        log.info("sign-up dropped: the form came back %.1f s after it was shown", age)
        return sent_page(desk, request, lang, shown_address)
    ip = request.client.host if request.client else ""
    if not desk.per_ip.allow(ip):
        log.warning("sign-up refused: more than %d from one client address this hour", s.per_ip_per_hour)
        return desk.site.pages.message(lang, "subscribe_title", t["subscribe_too_many"], status=429)
    if address is None:
        return form_page(desk, lang, values=values, error=t["stop_bad_email"], status=400, form_id=form_id)
    if values["industry"] and values["industry"] not in s.industries:
        return form_page(desk, lang, values=values, error=t["subscribe_bad_choice"], status=400, form_id=form_id)
    if form.get("consent", [""])[0] != "yes":
        return form_page(desk, lang, values=values, error=t["subscribe_need_consent"], status=400, form_id=form_id)
    shown = one("shown", 64)
    if shown and shown != wording_digest(wording(desk.config, lang)):
        # A snippet printed before the wording changed: the record must hold the text the person saw, so the
        # hosted page shows the current wording and asks for the click again.
        return form_page(desk, lang, values=values, error=t["subscribe_again"], status=400, form_id=form_id)
    signup = SignUp(
        email=address,
        language=lang,
        form_id=form_id,
        wording=wording(desk.config, lang),
        name=values["name"],
        company=values["company"],
        title=values["title"],
        industry=values["industry"],
        topics=tuple(values["topics"]),
        offered=tuple(desk.topics),
        text=values["text"],
        ip=ip,
        user_agent=request.headers.get("user-agent", "")[:1000],
    )
    await run_in_threadpool(sign_up, desk, signup)
    return sent_page(desk, request, lang, address)


def sign_up(desk: SignupDesk, signup: SignUp) -> None:
    """Keep the sign-up and mail the confirmation if :func:`request_signup` says so (errors are logged: the page
    stays the same)."""
    s = desk.config.subscribe
    try:
        asked = request_signup(
            desk.site.engine,
            signup,
            confirm_for=timedelta(hours=s.confirm_hours),
            resend_after=timedelta(minutes=s.resend_minutes),
        )
    except Exception:
        log.exception("sign-up not kept")
        return
    log.info("sign-up (form %s): %s", signup.form_id, asked.outcome)
    if not asked.send:
        return
    if not desk.mails.allow(signup.email):
        log.warning("sign-up confirmation not sent: more than %d confirmation mails this minute", s.mails_per_minute)
        return
    strings = desk.site.pages.strings[signup.language if signup.language in LANGUAGES else "ja"]
    msg = confirmation_message(desk.config, strings, asked.pending_id, asked.nonce, signup)
    try:
        if is_real_sender(desk.config):
            require_preflight(desk.config)  # example identity, unreachable base_url ...: nothing leaves
        with make_sender(desk.config) as sender:
            sender.send(msg)
    except Exception as exc:  # any sender trouble: logged; a sign-up after resend_minutes tries again
        log.warning("sign-up confirmation %s not sent: %s", asked.pending_id, str(exc).split("\n", 1)[0][:300])
        return
    log.info("sign-up confirmation %s sent", asked.pending_id)


def confirmation_message(
    config: Config, strings: dict[str, str], pending_id: int, nonce: str, signup: SignUp
) -> OutgoingMessage:
    """The double opt-in mail: the signed ``/s`` link, the topics chosen, and the legal footer, in the sign-up's
    language. Not a list mail (the person is on no list yet): no List-Unsubscribe."""
    url = tracking.Links(config).url(tracking.CONFIRM, pending_id, nonce)
    org = sender_name(config)
    text = strings["subscribe_mail_body"].format(
        address=signup.email, url=url, hours=f"{config.subscribe.confirm_hours:g}"
    )
    if signup.topics:
        text += "\n\n" + strings["subscribe_mail_topics"].format(topics=", ".join(signup.topics))
    text += legal_footer(config, strings)
    identity = config.identity
    return OutgoingMessage(
        delivery_id=0,
        campaign="subscribe-confirmation",
        to_address=signup.email,
        from_address=identity.from_address,
        from_name=identity.from_name,
        reply_to=identity.reply_to,
        subject=strings["subscribe_mail_subject"].format(org=org),
        html=mail_html(text, url),
        text=text,
        message_id=f"<nurture.signup.{secrets.token_hex(8)}@{domain_of(identity.from_address) or 'localhost'}>",
    )


async def confirm(desk: SignupDesk, request: Request) -> Response:
    """GET: the page with the button (changes nothing). POST: the click that confirms, once."""
    pages = desk.site.pages
    parts = tracking.verify(desk.site.secret, tracking.CONFIRM, request.path_params["token"], desk.site.previous)
    try:
        pending_id, nonce = (int(parts[0]), parts[1]) if parts and len(parts) == 2 else (0, "")
    except ValueError:
        pending_id, nonce = 0, ""
    if not pending_id:
        desk.site.token_refused(tracking.CONFIRM, request.url.path)
        return pages.not_found(request)
    if request.method == "POST":
        if (await read_form(request)).get("confirm") != ["yes"]:
            return pages.bad_request(page_language(request))
        done = await run_in_threadpool(confirm_signup, desk.site.engine, pending_id, nonce)
        if done.outcome == "invalid":
            return pages.not_found(request)
        lang = page_language(request, done.language)
        state = {"confirmed": "done", "already": "already", "expired": "expired"}[done.outcome]
        title = {"done": "confirmed_title", "already": "confirmed_title", "expired": "confirm_expired_title"}[state]
        return pages.page(
            "confirm.html",
            lang,
            title,
            410 if state == "expired" else 200,
            state=state,
            address=mask_address(done.email),
            topics=", ".join(done.topics),
        )
    found = await run_in_threadpool(pending_for, desk.site.engine, pending_id, nonce)
    if found is None:
        return pages.not_found(request)
    outcome, row = found
    fields = dict(row.fields or {})
    lang = page_language(request, str(fields.get("language", "")))
    state = {"ok": "confirm", "already": "already", "expired": "expired"}[outcome]
    title = {"confirm": "confirm_title", "already": "confirmed_title", "expired": "confirm_expired_title"}[state]
    return pages.page(
        "confirm.html",
        lang,
        title,
        410 if state == "expired" else 200,
        state=state,
        address=mask_address(row.email),
        topics=", ".join(str(t) for t in fields.get("topics", [])),
        action=request.url.path,
    )


def routes(site: Site) -> list[Route]:
    """The sign-up routes when ``[subscribe] enabled``; none otherwise."""
    s = site.config.subscribe
    if not s.enabled:
        return []
    desk = SignupDesk(
        site=site,
        topics=offered_topics(site.viewer.campaigns.values()),
        per_ip=RequestLimiter(per_address_seconds=3600, per_minute=10**9, per_key=s.per_ip_per_hour),
        # Per address the database keeps the window (request_signup, across processes); this caps the total.
        mails=RequestLimiter(per_address_seconds=0, per_minute=s.mails_per_minute),
    )
    return [
        Route("/subscribe", functools.partial(show, desk), methods=["GET"]),
        Route("/subscribe", functools.partial(submit, desk), methods=["POST"]),
        Route("/subscribe", functools.partial(preflight, desk), methods=["OPTIONS"]),
        Route("/subscribe/token", functools.partial(token, desk), methods=["GET"]),
        Route("/subscribe/token", functools.partial(preflight, desk), methods=["OPTIONS"]),
        Route("/s/{token}", functools.partial(confirm, desk), methods=["GET", "POST"]),
    ]
