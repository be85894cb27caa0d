"""Was a person behind this open or click? Labels ``human`` / ``machine`` / ``unknown`` with a confidence (0-1)
and the name of the rule that decided (pure functions; :mod:`nurture.track.record` applies them when recording).

Events are never dropped: scoring reads the label, people can audit it, and a rule found wrong can be re-run.
Nothing is ever unsubscribed or advanced by a GET or an open (RFC 8058: link scanners fetch URLs).

Single-event rules, strongest first (the first that matches decides):

=======================  =======  =====  ===================================================================
rule                     label    conf.  why / source
=======================  =======  =====  ===================================================================
``honeypot``             machine  1.0    the link is hidden from people (``tracking.honeypot_url``), so only a
                                         program that follows every link reaches it (Mautic #16263 discussion)
``sg_machine_open``      machine  0.95   SendGrid's own flag on opens it attributes to Apple MPP prefetching
                                         (SendGrid Event Webhook reference, ``open`` event)
``head_request``         machine  0.95   browsers and mail clients GET; link checkers and gateways often send
                                         HEAD first (RFC 9110 9.3.2: HEAD is for metadata, not display)
``security_gateway``     machine  0.9    user agent of a mail security scanner (:data:`GATEWAY_AGENTS`):
                                         Proofpoint URL Defense, Mimecast, Barracuda, Microsoft Safe Links /
                                         Defender (resend-node #901, mautic #16263, opencollective #3656)
``apple_mpp``            machine  0.9    Apple Mail Privacy Protection prefetch: user agent exactly
                                         ``Mozilla/5.0`` from Apple's 17.0.0.0/8 network (SocketLabs "Identifying
                                         Apple MPP opens"; 17.0.0.0/8 is Apple's ARIN allocation). Either sign
                                         alone: ``apple_mpp_agent`` / ``apple_network``, machine 0.7
``gateway_network``      machine  0.8    a click from Microsoft Exchange Online Protection's published ranges
                                         (Microsoft 365 "URLs and IP address ranges", EOP: 40.92.0.0/15,
                                         40.107.0.0/16, 52.100.0.0/14, 104.47.0.0/17): Safe Links detonation
``too_soon``             machine  0.8    within :data:`TOO_SOON_SECONDS` of the delivery's ``sent_at``: no person
                                         opens and reads that fast; scanners act on arrival (listmonk #1025
                                         "open rate 50% within minutes"; Mautic's default threshold is 2 s)
``automation_agent``     machine  0.8    a library or crawler agent (curl, python-requests, Go-http-client,
                                         "bot", "spider", link-preview fetchers): not a mail client
``gmail_image_proxy``    unknown  0.5    Gmail fetches images through ``GoogleImageProxy`` when the mail is shown,
                                         hiding the reader's IP and agent, and caches them, so repeat opens are
                                         invisible and an open is likely but unproven (Google, "Images now
                                         showing", Gmail blog 2013-12-12)
``no_user_agent``        unknown  0.4    no agent at all: too little to tell
``browser``              human    0.7    a browser or mail-client agent with none of the signs above
=======================  =======  =====  ===================================================================

Rules over several events (applied by ``record.record_events``, which relabels the earlier events too):

- ``click_burst`` (machine 0.9): two or more *different* links of one mail clicked within
  :data:`BURST_SECONDS` — a person cannot, a scanner following every link does (Mautic #16263).
- ``honeypot_clicker`` (machine 1.0): every open and click of that mail from the IP and user agent that
  followed the honeypot link.
- ``caught_source`` (machine 0.9): a *source* caught as a machine by one of :data:`CATCHING_RULES` (the
  honeypot, a click burst, a security gateway's agent or network, a HEAD request, SendGrid's machine-open flag)
  makes every other open and click of the same recipient from the same source within
  :data:`SOURCE_WINDOW_SECONDS` (before or after) machine too, whichever batch, worker or order they arrive in.
  A source is the user agent plus the network (:func:`source_key`: the IPv4 /24 or IPv6 /64): scanners fetch
  from pools of neighbouring addresses, while a person's browser agent on the same network is a different agent
  string far more often than not. Scope is the recipient, not the mail, so a scanner that reads two mails of one
  person within the window is caught on both.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

HUMAN, MACHINE, UNKNOWN = "human", "machine", "unknown"
LABELS = (HUMAN, MACHINE, UNKNOWN)

#: Opens or clicks this soon after the delivery was handed over are scanners (a person needs longer).
TOO_SOON_SECONDS = 5.0
#: Different links of one mail clicked within this many seconds: a scanner.
BURST_SECONDS = 1.0
BURST_CONFIDENCE = 0.9
#: Rules that the burst rule must not overwrite (they are at least as sure).
STRONGER_THAN_BURST = ("honeypot", "honeypot_clicker", "sg_machine_open", "head_request")
#: Rules whose verdict convicts the source (agent + network), not just the one hit: its other hits for the same
#: recipient within the window are machine too (``caught_source``). Weaker signs (too soon, Apple's agent alone,
#: an automation agent) label their own hit only: a person may share them.
CATCHING_RULES = (
    "honeypot",
    "honeypot_clicker",
    "click_burst",
    "security_gateway",
    "gateway_network",
    "head_request",
    "sg_machine_open",
)  # the same tuple as nurture.store.models.CATCHING_RULES (the predicate of ix_events_catchers): keep in step
CAUGHT_SOURCE_RULE = "caught_source"
CAUGHT_SOURCE_CONFIDENCE = 0.9
#: How long a caught source is remembered, before and after the hit that caught it (``[tracking]
#: source_window_minutes``). Scanners act within seconds of delivery and re-scan on open; ten minutes covers
#: both without reaching the hour a person reads the mail in.
SOURCE_WINDOW_SECONDS = 600.0

#: Substrings (lower case) of mail-security scanners' user agents. Gateways that pose as a desktop browser are
#: caught by the network and timing rules instead.
GATEWAY_AGENTS = (
    "proofpoint",
    "urldefense",
    "ppops",  # Proofpoint URL Defense / Targeted Attack Protection
    "mimecast",  # Mimecast URL Protect
    "barracuda",  # Barracuda Sentinel / Link Protection
    "safelinks",
    "safe links",
    "msoffice-atp",  # Microsoft Defender for Office 365 Safe Links
    "trendmicro",
    "trend micro",
    "forcepoint",
    "fireeye",
    "trellix",
    "symantec",
    "messagelabs",
    "sophos",
    "cisco",
    "ironport",
    "zscaler",
    "fortiguard",
    "fortimail",
    "paloalto",
    "checkpoint",
    "avanan",
    "abnormal",
    "libraesva",
    "hornetsecurity",
    "spamtitan",
    "vadesecure",
)
_AUTOMATION = re.compile(
    r"curl/|wget/|python-requests|python-urllib|aiohttp|httpx|go-http-client|java/|okhttp|libwww|"
    r"headlesschrome|phantomjs|bot\b|bot/|spider|crawler|scanner|preview|slackbot|facebookexternalhit|"
    r"linkcheck|validator|monitor",
    re.IGNORECASE,
)
_APPLE_NET = ipaddress.ip_network("17.0.0.0/8")
_GATEWAY_NETS = tuple(
    ipaddress.ip_network(n) for n in ("40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17")
)


@dataclass(frozen=True)
class Verdict:
    label: str
    confidence: float
    rule: str


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip()) if text else None
    except ValueError:
        return None


def label_hit(
    kind: str,
    *,
    user_agent: str = "",
    ip: str = "",
    method: str = "GET",
    occurred_at: datetime | None = None,
    sent_at: datetime | None = None,
    honeypot: bool = False,
    machine_open: bool | None = None,
) -> Verdict:
    """The verdict of the single-event rules for an ``opened`` or ``clicked`` event (table in the module doc)."""
    if honeypot:
        return Verdict(MACHINE, 1.0, "honeypot")
    if machine_open:
        return Verdict(MACHINE, 0.95, "sg_machine_open")
    strong, weak = _agent_verdicts(kind, (user_agent or "").strip(), ip or "", (method or "GET").upper())
    if strong is not None:
        return strong
    if (
        occurred_at is not None
        and sent_at is not None
        and 0 <= (occurred_at - sent_at).total_seconds() < TOO_SOON_SECONDS
    ):
        return Verdict(MACHINE, 0.8, "too_soon")
    return weak


@functools.lru_cache(maxsize=8192)
def _agent_verdicts(kind: str, ua: str, ip: str, method: str) -> tuple[Verdict | None, Verdict]:
    """The rules that depend only on the request: those ranked above ``too_soon`` (or None) and those below.
    Cached: a tracking server sees the same few hundred agents and proxies over and over."""
    low = ua.lower()
    addr = _ip(ip)
    apple_agent = ua == "Mozilla/5.0"
    apple_net = addr is not None and addr in _APPLE_NET
    strong: Verdict | None = None
    if method == "HEAD":
        strong = Verdict(MACHINE, 0.95, "head_request")
    elif any(g in low for g in GATEWAY_AGENTS):
        strong = Verdict(MACHINE, 0.9, "security_gateway")
    elif apple_agent and apple_net:
        strong = Verdict(MACHINE, 0.9, "apple_mpp")
    elif kind == "clicked" and addr is not None and any(addr in n for n in _GATEWAY_NETS):
        strong = Verdict(MACHINE, 0.8, "gateway_network")
    if apple_agent:
        weak = Verdict(MACHINE, 0.7, "apple_mpp_agent")
    elif apple_net:
        weak = Verdict(MACHINE, 0.7, "apple_network")
    elif "googleimageproxy" in low:
        weak = Verdict(UNKNOWN, 0.5, "gmail_image_proxy")
    elif _AUTOMATION.search(ua):
        weak = Verdict(MACHINE, 0.8, "automation_agent")
    elif not ua:
        weak = Verdict(UNKNOWN, 0.4, "no_user_agent")
    else:
        weak = Verdict(HUMAN, 0.7, "browser")
    return strong, weak


@functools.lru_cache(maxsize=8192)
def source_key(ip: str, user_agent: str) -> tuple[str, str] | None:
    """The source of a hit: (network, user agent), the network being the IPv4 /24 or IPv6 /64 of ``ip``. None
    without a parseable address (nothing to remember it by)."""
    addr = _ip(ip)
    if addr is None:
        return None
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False)), (user_agent or "").strip()


def caught_hits(hits: Iterable[tuple[int, int, str, str, str, str, datetime]], window_seconds: float) -> set[int]:
    """Ids of hits to relabel ``caught_source``: hits not yet machine whose recipient, user agent and network
    match a hit labelled machine by one of :data:`CATCHING_RULES` within ``window_seconds`` (either side).

    ``hits`` are ``(event id, prospect id, ip, user agent, label, rule, occurred_at)``.
    """
    catchers: dict[tuple[int, tuple[str, str]], list[datetime]] = {}
    others: list[tuple[int, tuple[int, tuple[str, str]], datetime]] = []
    for event_id, prospect_id, ip, agent, label, rule, at in hits:
        key = source_key(ip, agent)
        if key is None:
            continue
        if label == MACHINE and rule in CATCHING_RULES:
            catchers.setdefault((prospect_id, key), []).append(at)
        elif label != MACHINE:
            others.append((event_id, (prospect_id, key), at))
    if not catchers:
        return set()
    return {
        event_id
        for event_id, scope, at in others
        if any(abs((at - caught).total_seconds()) <= window_seconds for caught in catchers.get(scope, ()))
    }


def burst_clicks(clicks: Iterable[tuple[int, int, object, datetime]]) -> set[int]:
    """Ids of clicks that belong to a burst: per delivery, two or more different links clicked within
    :data:`BURST_SECONDS` of each other. ``clicks`` are ``(event id, delivery id, link key, occurred_at)``.
    A sliding window with a count per link: linear in the number of clicks."""
    by_delivery: dict[int, list[tuple[datetime, int, object]]] = {}
    for event_id, delivery_id, link, at in clicks:
        by_delivery.setdefault(delivery_id, []).append((at, event_id, link))
    out: set[int] = set()
    for hits in by_delivery.values():
        if len(hits) < 2:
            continue
        hits.sort(key=lambda h: (h[0], h[1]))
        counts: dict[object, int] = {}
        start = marked = 0
        for end, (at, _, link) in enumerate(hits):
            counts[link] = counts.get(link, 0) + 1
            while (at - hits[start][0]).total_seconds() > BURST_SECONDS:
                gone = hits[start][2]
                counts[gone] -= 1
                if not counts[gone]:
                    del counts[gone]
                start += 1
            if len(counts) >= 2:
                out.update(h[1] for h in hits[max(start, marked) : end + 1])
                marked = end + 1
    return out
