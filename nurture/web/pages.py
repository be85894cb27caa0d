"""The pages a reader reaches from a mail: unsubscribe (``/u``: a page, and the RFC 8058 one-click POST),
preferences (``/p``: pause, mail less often) and view in browser (``/v``).

Every token is checked before anything else (with the current secret, then the previous ones). A bad ``/u`` or
``/p`` token is counted and logged, and gets a 404 that still lets the person stop their mail by address
(:mod:`nurture.web.optout`); a bad ``/v`` token gets the plain 404 page. GET never changes anything (link
scanners and image proxies fetch the URLs in a mail by themselves); a POST records its event with
:func:`nurture.track.record_event` before the answer, never through the buffer. Pages speak the mail's language
(``deliveries.language``), else the prospect's, else the browser's (:func:`nurture.web.site.page_language`).
"""

from __future__ import annotations

import calendar
import functools
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from nurture.compose import links as tracking
from nurture.core import clock
from nurture.store.models import Delivery, Prospect
from nurture.track import FREQUENCY_CHANGED, PAUSED, UNSUBSCRIBED, NewEvent, Source, record_event
from nurture.web.forms import read_form
from nurture.web.optout import stop_page
from nurture.web.site import NO_STORE, Site, page_language
from nurture.web.viewer import MAIL_HEADERS

PAUSE_MONTHS = (1, 3, 6, 12)
FREQUENCY_FACTORS = (2, 3)


@dataclass(frozen=True)
class Recipient:
    """Who a page is about and which mail the link came from, read from the database (reads never write).
    The mail's fields are empty when the token names no delivery (delivery 0: a preview)."""

    prospect_id: int
    email: str
    status: str
    #: The prospect's language ("" if unknown).
    language: str
    campaign: str
    subject: str
    sent_at: datetime | None
    item_key: str
    #: The mail's language (``deliveries.language``; "" for a row planned before it was stored).
    mail_language: str


def relative(url: str) -> str:
    """The path of one of our own URLs: forms post (and links lead) to the origin that served the page, whatever
    ``[tracking] base_url`` says (CSP ``form-action 'self'`` blocks a form posting to another origin)."""
    return "/" + url.split("://", 1)[-1].partition("/")[2]


def mask_address(email: str) -> str:
    """``t***@example.co.jp``: enough to recognise one's own address on a page anyone with the link can see."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def add_months(instant: datetime, months: int) -> datetime:
    """Same day ``months`` later (clamped to the month's last day: Jan 31 + 1 month = Feb 28/29)."""
    month0 = instant.month - 1 + months
    year, month = instant.year + month0 // 12, month0 % 12 + 1
    return instant.replace(year=year, month=month, day=min(instant.day, calendar.monthrange(year, month)[1]))


def find_recipient(engine: Engine, delivery_id: int, prospect_id: int) -> Recipient | None:
    """The prospect ``prospect_id`` with the mail ``delivery_id`` (0: none); None if the prospect is gone."""
    with engine.connect() as conn:
        p = (
            conn.execute(
                select(Prospect.id, Prospect.email, Prospect.status, Prospect.language).where(
                    Prospect.id == prospect_id
                )
            ).first()
            if prospect_id
            else None
        )
        d = (
            conn.execute(
                select(
                    Delivery.campaign, Delivery.subject, Delivery.sent_at, Delivery.item_key, Delivery.language
                ).where(Delivery.id == delivery_id)
            ).first()
            if delivery_id
            else None
        )
    if p is None:
        return None
    if d is None:
        return Recipient(p.id, p.email, p.status, p.language or "", "", "", None, "", "")
    return Recipient(
        p.id, p.email, p.status, p.language or "", d.campaign, d.subject, d.sent_at, d.item_key, d.language or ""
    )


def token_ids(secret: bytes, purpose: str, token: str, previous: tuple[bytes, ...] = ()) -> tuple[int, int] | None:
    """(delivery id, prospect id) signed in a page token for ``purpose``; None if the token is bad."""
    parts = tracking.verify(secret, purpose, tracking.token_from_path(token, purpose), previous)
    try:
        return (int(parts[0]), int(parts[1])) if parts and len(parts) == 2 else None
    except ValueError:
        return None


async def addressee(site: Site, request: Request, purpose: str) -> tuple[int, int, Recipient | None, str] | None:
    """(delivery id, prospect id, who, page language) from the URL's token; None if the token is bad."""
    found = token_ids(site.secret, purpose, request.path_params["token"], site.previous)
    if found is None:
        return None
    who = await run_in_threadpool(find_recipient, site.engine, *found)
    lang = page_language(request, who.mail_language, who.language) if who else page_language(request)
    return found[0], found[1], who, lang


def broken_link(site: Site, request: Request, purpose: str) -> Response:
    """A ``/u`` or ``/p`` token no secret verifies: counted and logged, and a 404 whose page still offers the
    opt-out by address (:func:`nurture.web.optout.stop_page`), so an unsubscribe never dead-ends."""
    site.token_refused(purpose, request.url.path)
    return stop_page(site, page_language(request), broken_link=True, status=404)


async def unsubscribe(site: Site, request: Request) -> Response:
    """GET: a page with a button (never unsubscribes). POST with the RFC 8058 body: unsubscribes now, 200; a
    second POST for someone already unsubscribed records nothing more."""
    found = await addressee(site, request, tracking.UNSUBSCRIBE)
    if found is None:
        return broken_link(site, request, tracking.UNSUBSCRIBE)
    delivery_id, prospect_id, who, lang = found
    address = mask_address(who.email) if who else ""
    if request.method == "POST":
        # RFC 8058 section 3: the one-click POST carries exactly this key and value; the page's button
        # posts the same, so there is one way to unsubscribe.
        if (await read_form(request)).get("List-Unsubscribe") != ["One-Click"]:
            return site.pages.bad_request(lang)
        if who is not None and who.status != "unsubscribed":  # a second click, a retrying client: no second event
            await run_in_threadpool(
                record_event,
                site.engine,
                NewEvent(
                    UNSUBSCRIBED,
                    clock.now(),
                    Source.WEB,
                    delivery_id=delivery_id or None,
                    prospect_id=prospect_id,
                    user_agent=request.headers.get("user-agent", ""),
                    ip=request.client.host if request.client else "",
                    data={"via": "page" if "text/html" in request.headers.get("accept", "") else "one-click"},
                ),
            )
        # 200 and a page, never a redirect (RFC 8058 section 3).
        return site.pages.page("unsubscribe.html", lang, "unsubscribed_title", state="done", address=address)
    if who is not None and who.status != "active":
        return site.pages.page("unsubscribe.html", lang, "already_title", state="already", address=address)
    return site.pages.page(
        "unsubscribe.html",
        lang,
        "unsubscribe_title",
        state="confirm",
        address=address,
        action=request.url.path,
        preferences_url=relative(tracking.urls_for(site.config, delivery_id, prospect_id)["preferences"]),
    )


async def preferences(site: Site, request: Request) -> Response:
    """GET: the choices. POST ``choice=pause:<months>`` or ``less:<factor>``: recorded now, the page again."""
    found = await addressee(site, request, tracking.PREFERENCES)
    if found is None:
        return broken_link(site, request, tracking.PREFERENCES)
    delivery_id, prospect_id, who, lang = found
    t = site.pages.strings[lang]
    message = ""
    if request.method == "POST":
        choice = (await read_form(request)).get("choice", [""])[0]
        kind, _, value = choice.partition(":")
        now = clock.now()
        if kind == "pause" and value.isdigit() and int(value) in PAUSE_MONTHS:
            until = add_months(now, int(value))
            event = NewEvent(
                PAUSED,
                now,
                Source.WEB,
                delivery_id=delivery_id or None,
                prospect_id=prospect_id,
                data={"paused_until": until.isoformat(), "months": int(value)},
            )
            message = t["paused_done"].format(until=until.date().isoformat())
        elif kind == "less" and value.isdigit() and (int(value) in FREQUENCY_FACTORS or value == "1"):
            event = NewEvent(
                FREQUENCY_CHANGED,
                now,
                Source.WEB,
                delivery_id=delivery_id or None,
                prospect_id=prospect_id,
                data={"frequency_factor": float(value)},
            )
            message = t["less_done"]
        else:
            return site.pages.bad_request(lang)
        if who is not None:
            await run_in_threadpool(record_event, site.engine, event)
    urls = tracking.urls_for(site.config, delivery_id, prospect_id)
    return site.pages.page(
        "preferences.html",
        lang,
        "preferences_title",
        message=message,
        address=mask_address(who.email) if who else "",
        action=request.url.path,
        unsubscribe_url=relative(urls["unsubscribe"]),
        pause_choices=PAUSE_MONTHS,
        frequency_choices=FREQUENCY_FACTORS,
    )


async def view(site: Site, request: Request) -> Response:
    """The mail re-rendered without tracking (:class:`~nurture.web.viewer.MailViewer`), else a page saying when it
    was sent and where to find it; a preview link (no delivery) gets a page saying so."""
    found = await addressee(site, request, tracking.VIEW)
    if found is None:
        return site.pages.not_found(request)
    delivery_id, _, who, lang = found
    t = site.pages.strings[lang]
    if who is None or not who.campaign:
        return site.pages.message(lang, "view_title", t["view_preview"])
    html = await run_in_threadpool(mail_html, site, who, delivery_id)
    if html is not None:
        return HTMLResponse(html, headers={**NO_STORE, **MAIL_HEADERS})
    when = who.sent_at.date().isoformat() if who.sent_at else "-"
    return site.pages.message(
        lang, "view_title", t["view_lead"].format(subject=who.subject, date=when, address=mask_address(who.email))
    )


def mail_html(site: Site, who: Recipient, delivery_id: int) -> str | None:
    """The HTML of ``who``'s mail ``delivery_id`` as :meth:`MailViewer.render` makes it; None for an erased
    person (nothing of theirs is shown again), or when the viewer cannot render it."""
    if who.status == "erased" or site.viewer.item(who.campaign, who.item_key) is None:
        return None
    with site.engine.connect() as conn:
        person = conn.execute(select(Prospect).where(Prospect.id == who.prospect_id)).mappings().first()
    if person is None:
        return None
    return site.viewer.render(
        who.campaign, who.item_key, person, tracking.urls_for(site.config, delivery_id, who.prospect_id)
    )


def routes(site: Site) -> list[Route]:
    """``/u``, ``/p`` and ``/v`` for ``site``."""
    return [
        Route("/u/{token}", functools.partial(unsubscribe, site), methods=["GET", "POST"]),
        Route("/p/{token}", functools.partial(preferences, site), methods=["GET", "POST"]),
        Route("/v/{token}", functools.partial(view, site), methods=["GET"]),
    ]
