"""Notices and digests as mail parts: a subject, an HTML part and a text part, in Japanese or English.

Templates live in ``templates/`` (autoescaped HTML with inline styles, as mail clients need, and plain text);
words come from :mod:`nurture.notify.texts`. Times are shown in ``[cadence] time_zone``.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from nurture.notify.texts import TEXTS

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


_ENV = _environment()


class Words:
    """``t("key", n=3)``: the text of ``key`` in one language, formatted."""

    def __init__(self, language: str, time_zone: str) -> None:
        self.language = language if language in TEXTS else "ja"
        self.table = TEXTS[self.language]
        self.zone = zoneinfo.ZoneInfo(time_zone)

    def __call__(self, key: str, **values: Any) -> str:
        text = self.table[key]
        return text.format(**values) if values else text

    def when(self, value: datetime | date | None, *, with_time: bool = True) -> str:
        if value is None:
            return self.table["none"]
        if isinstance(value, datetime):
            local = value.astimezone(self.zone)
            return local.strftime("%Y-%m-%d %H:%M") if with_time else local.strftime("%Y-%m-%d")
        return value.isoformat()

    def day(self, value: datetime | date | None) -> str:
        return self.when(value, with_time=False)

    def reason(self, reason: str) -> str:
        return self.table.get(f"reason_{reason}", reason)

    def state(self, state: str) -> str:
        return self.table.get(f"state_{state}", state)


def render(template: str, language: str, time_zone: str, subject: str, **context: Any) -> Rendered:
    """Render ``template``.html and ``template``.txt with ``context`` plus ``t`` (the :class:`Words`)."""
    words = Words(language, time_zone)
    context = {"t": words, "lang": words.language, "subject": subject, **context}
    html = _ENV.get_template(f"{template}.html").render(context)
    text = _ENV.get_template(f"{template}.txt").render(context)
    return Rendered(subject, html, text)


def notice(
    facts: dict[str, Any], *, language: str, time_zone: str, owner: str, escalation: bool, ack_minutes: float
) -> Rendered:
    """The notice (or the escalation) of one handoff, from :func:`nurture.notify.facts.handoff_facts`."""
    words = Words(language, time_zone)
    p = facts["prospect"]
    minutes = f"{ack_minutes:g}"
    values = {
        "name": p["name"] or p["email"],
        "company": p["company"] or words("none"),
        "reason": words.reason(facts["handoff"]["reason"]),
        "minutes": minutes,
    }
    subject = words("subject_escalation" if escalation else "subject_notice", **values)
    lead = (
        words("lead_escalation", minutes=minutes, owner=owner or words("none"))
        if escalation
        else words("lead_notice", owner=owner or words("none"))
        + (" " if words.language == "en" else "")
        + words.table.get(f"hint_{facts['handoff']['reason']}", "")
    )
    return render("handoff", language, time_zone, subject, f=facts, lead=lead, escalation=escalation)


def digest(data: dict[str, Any], *, language: str, time_zone: str, owner: str, no_contact_days: int) -> Rendered:
    """One owner's digest, from :meth:`nurture.report.owner_digest.OwnerDigest.as_dict`."""
    words = Words(language, time_zone)
    since, until = words.day(data["since"]), words.day(data["until"])
    suffix = "" if data["owner"] else "_unassigned"  # nobody's prospects: the default owner reads about them
    subject = words("digest_subject" + suffix, owner=owner, since=since, until=until)
    lead = words("digest_lead" + suffix, owner=owner, since=since, until=until)
    return render("digest", language, time_zone, subject, d=data, lead=lead, no_contact_days=no_contact_days)
