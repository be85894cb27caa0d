"""An opt-out that never dead-ends: ``/stop`` (and the page a broken ``/u`` or ``/p`` link gets).

A link whose token no secret verifies (cut off by a mail client, or signed with a secret dropped since) cannot say
whom it is about. Instead of a bare 404 the person gets a form: they enter their address and, when it belongs to
an active prospect, a confirmation mail with a freshly signed ``/u`` link is sent through the configured sender
(:func:`nurture.deliver.senders.make_sender`). Opening it and pressing the button unsubscribes as usual.

The answer is the same whether or not the address is known (the page must not tell a stranger who is on the
list), and mails are rate-limited (:class:`RequestLimiter`) so the form cannot be used to flood someone's inbox.
Limits are kept per server process.
"""

from __future__ import annotations

import functools
import hashlib
import html
import logging
import secrets
import threading
import time
from collections import deque

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nurture.compose import links as tracking
from nurture.compose.message import OutgoingMessage, domain_of
from nurture.core.config import Config
from nurture.deliver.senders import make_sender
from nurture.people.queries import address_key
from nurture.store.models import Prospect
from nurture.web.forms import read_form
from nurture.web.site import LANGUAGES, Site, page_language

log = logging.getLogger(__name__)


class RequestLimiter:
    """At most one confirmation mail per address per ``per_address_seconds`` and ``per_minute`` mails in all
    (monotonic time: the wall clock may be frozen or shifted in tests). Thread-safe."""

    def __init__(self, per_address_seconds: float = 3600.0, per_minute: int = 30) -> None:
        self.per_address_seconds = per_address_seconds
        self.per_minute = per_minute
        self._last: dict[str, float] = {}
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()

    def allow(self, address: str) -> bool:
        key = hashlib.sha256(address.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            while self._recent and now - self._recent[0] > 60:
                self._recent.popleft()
            last = self._last.get(key)
            if (last is not None and now - last < self.per_address_seconds) or len(self._recent) >= self.per_minute:
                return False
            if len(self._last) > 100_000:  # forget the old ones rather than grow without bound
                self._last = {k: t for k, t in self._last.items() if now - t < self.per_address_seconds}
            self._last[key] = now
            self._recent.append(now)
            return True


def normalise_address(text: str) -> str | None:
    """The address as prospects store it (:func:`nurture.people.queries.address_key`), or None if it is not an
    address."""
    key = address_key(text)
    try:
        validate_email(key, check_deliverability=False)
    except EmailNotValidError:
        return None
    return key


def confirmation_message(config: Config, strings: dict[str, str], prospect_id: int, address: str) -> OutgoingMessage:
    """The mail that carries a fresh ``/u`` link (delivery 0: nothing is counted against a campaign mail)."""
    links = tracking.Links(config)
    url = links.url(tracking.UNSUBSCRIBE, 0, prospect_id)
    identity = config.identity
    org = identity.organization or identity.from_name or domain_of(identity.from_address)
    text = strings["stop_mail_body"].format(address=address, url=url)
    footer = "\n\n--\n" + "\n".join(
        line
        for line in (
            strings["sender"].format(org=org),
            identity.postal_address,
            strings["contact"].format(inquiry=identity.inquiry) if identity.inquiry else "",
        )
        if line
    )
    link = '<a href="' + _html(url) + '">' + _html(url) + "</a>"
    paragraphs = "".join("<p>" + _html(p).replace(_html(url), link) + "</p>" for p in (text + footer).split("\n\n"))
    body = "<!doctype html><html><body>" + paragraphs + "</body></html>"
    return OutgoingMessage(
        delivery_id=0,
        campaign="unsubscribe-confirmation",
        to_address=address,
        from_address=identity.from_address,
        from_name=identity.from_name,
        reply_to=identity.reply_to,
        subject=strings["stop_mail_subject"].format(org=org),
        html=body,
        text=text + footer,
        list_unsubscribe=links.list_unsubscribe(0, prospect_id, unsubscribe_url=url),
        message_id=f"<nurture.stop.{secrets.token_hex(8)}@{domain_of(identity.from_address) or 'localhost'}>",
    )


def _html(text: str) -> str:
    return html.escape(text, quote=True).replace("\n", "<br>")


def send_confirmation(site: Site, lang: str, address: str) -> bool:
    """Send the confirmation mail to ``address`` if it is an active prospect's (in their language, else ``lang``);
    whether a mail left. Failures are logged (the page does not change: it never says whether the address is
    known)."""
    with site.engine.connect() as conn:
        row = conn.execute(
            select(Prospect.id, Prospect.status, Prospect.language).where(Prospect.email == address)
        ).first()
    if row is None or row.status != "active":
        return False
    # The mail in the prospect's language when it is known, else the page's.
    known = (row.language or "")[:2].lower()
    strings = site.pages.strings[known if known in LANGUAGES else lang]
    msg = confirmation_message(site.config, strings, row.id, address)
    try:
        with make_sender(site.config) as sender:
            sender.send(msg)
    except Exception as exc:  # any sender trouble: logged, the person is told to contact the sender
        log.warning("unsubscribe confirmation to prospect %s not sent: %s", row.id, str(exc).split("\n", 1)[0][:300])
        return False
    log.info("unsubscribe confirmation sent to prospect %s", row.id)
    return True


def stop_page(site: Site, lang: str, *, broken_link: bool = False, error: str = "", status: int = 200) -> Response:
    """The form: enter your address to get a confirmation mail. ``broken_link``: explain that the link failed."""
    t = site.pages.strings[lang]
    lead = t["stop_broken_lead"] if broken_link else t["stop_lead"]
    return site.pages.page("stop.html", lang, "stop_title", status, lead=lead, error=error)


async def stop(site: Site, limiter: RequestLimiter, request: Request) -> Response:
    """GET: the form. POST ``email`` (and ``lang``): the same answer for any address; a confirmation mail to an
    active prospect's address, at most once an hour per address."""
    if request.method == "GET":
        return stop_page(site, page_language(request))
    form = await read_form(request)
    chosen = form.get("lang", [""])[0]
    lang = chosen if chosen in LANGUAGES else page_language(request)
    address = normalise_address(form.get("email", [""])[0][:320])
    if address is None:
        return stop_page(site, lang, error=site.pages.strings[lang]["stop_bad_email"], status=400)
    if limiter.allow(address):
        await run_in_threadpool(send_confirmation, site, lang, address)
    return site.pages.message(
        lang, "stop_sent_title", site.pages.strings[lang]["stop_sent_lead"].format(address=address)
    )


def routes(site: Site) -> list[Route]:
    """``/stop`` for ``site``, with one limiter for the process."""
    return [Route("/stop", functools.partial(stop, site, RequestLimiter()), methods=["GET", "POST"])]
