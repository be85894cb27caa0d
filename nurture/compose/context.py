"""What a template sees: the variables of one mail, built from the configuration, campaign, item and prospect.

Contract: :func:`build_context` returns plain dicts and strings only (``today`` is a ``date``), so a sandboxed
template cannot reach the database session or ORM internals, and the renderer's fast path for dict lookups
applies. The names are documented for marketers in ``campaigns/README.md``: ``prospect.*`` (the fields of
:data:`PROSPECT_FIELDS` plus ``attributes``), ``owner.name``, ``campaign.*``, ``sender.*``, ``item.key``,
``item.vars``, ``urls.unsubscribe|preferences|view_in_browser`` and ``today``.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Mapping
from typing import Any

from nurture.core import clock

#: The prospect fields a template may use (besides ``attributes``); the sending engine reads exactly these.
PROSPECT_FIELDS = (
    "name",
    "company",
    "title",
    "industry",
    "email",
    "temperature",
    "stage",
    "rank",
    "owner",
    "language",
    "time_zone",
)


def _field(obj: Any, name: str, default: Any = "") -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def build_context(config: Any, campaign: Any, item: Any, prospect: Any, urls: Mapping[str, str]) -> dict:
    """The variables a template sees. ``prospect`` is a ``models.Prospect`` or a mapping with its fields;
    ``urls`` holds ``unsubscribe``, ``preferences`` and ``view_in_browser`` (``links.urls_for``); ``today`` is
    the date in the campaign's time zone (the configured one when the campaign has none).
    """
    identity = config.identity
    # One type check per call rather than per field (isinstance against an ABC is slow; this runs per mail).
    get = prospect.get if isinstance(prospect, Mapping) else functools.partial(getattr, prospect)
    attributes = dict(get("attributes", None) or {})
    person = {name: (get(name, "") or "") for name in PROSPECT_FIELDS}
    person["attributes"] = attributes
    cadence = getattr(campaign, "cadence", None)
    zone = getattr(cadence, "time_zone", None) or config.cadence.time_zone
    try:
        today = clock.now().astimezone(zoneinfo.ZoneInfo(zone)).date()
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        today = clock.now().date()
    return {
        "prospect": person,
        "owner": {"name": person["owner"]},
        "campaign": {
            "name": campaign.name,
            "description": getattr(campaign, "description", ""),
            "language": getattr(campaign, "language", ""),
        },
        "sender": {
            "organization": identity.organization or identity.from_name,
            "from_name": getattr(campaign, "from_name", None) or identity.from_name or identity.organization,
            "from_address": getattr(campaign, "from_address", None) or identity.from_address,
            "postal_address": identity.postal_address,
            "inquiry": identity.inquiry,
            "website": identity.website,
        },
        "item": {"key": _field(item, "key", ""), "vars": dict(_field(item, "vars", None) or {})},
        "urls": {
            "unsubscribe": urls.get("unsubscribe", ""),
            "preferences": urls.get("preferences", ""),
            "view_in_browser": urls.get("view_in_browser", ""),
        },
        "today": today,
    }
