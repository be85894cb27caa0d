"""Campaign files (``campaigns/<name>.toml``) -> validated, frozen :class:`Campaign` objects. No database.

The format is documented, with a fully commented example, in ``campaigns/README.md``. Loading checks
everything that can be checked without rendering: unknown keys (with "did you mean"), types, vocabularies,
segment fields and operators (:mod:`nurture.plan.segments`), dates and time zones, company holidays
(:mod:`nurture.plan.cadence`), template files that exist inside the templates folder, duplicate item keys, subject
syntax, and names unique across files. Every problem is collected and raised at once as one
:class:`~nurture.core.errors.ConfigError` whose lines read ``campaigns/mfg.toml:12: unknown key "temprature" (did you
mean "temperature"?)``. Findings that are suspicious but not wrong come from :func:`lint_campaign` as warnings.

The campaign's ``name`` is required (not taken from the file name) because deliveries are keyed by it:
renaming a file must never make nurture think nobody has received anything yet.

Why one module of ~550 lines: the file's shape (the ``_*Table`` dataclasses tomlschema checks against), the frozen
objects and the loader that turns one into the other change together whenever a key is added; split, every new
key would touch three files.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import jinja2

from nurture.core.config import Config
from nurture.core.errors import ConfigError, NotFound
from nurture.core.tomlschema import KeyPath, Problems, TomlFile, build, dotted
from nurture.plan import cadence as cadence_rules
from nurture.plan.cadence import Cadence, CompanyHoliday
from nurture.plan.segments import Segment, parse_segment
from nurture.store.models import TEMPERATURES

__all__ = [
    "Allowance",
    "Cadence",
    "Campaign",
    "CampaignTracking",
    "Content",
    "ContentItem",
    "Segment",
    "campaign_files",
    "lint_campaign",
    "load_campaign",
    "load_campaigns",
]

NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
ITEM_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_ID = 100  # deliveries.campaign / deliveries.item_key are VARCHAR(100)
MAX_TOPIC = 100  # prospect_topics.topic is VARCHAR(100)


@dataclass(frozen=True)
class ContentItem:
    """One mail of a campaign. ``line`` is where its ``[[content.items]]`` starts in the file."""

    key: str
    subject: str
    template: str
    text_template: str | None = None
    industries: tuple[str, ...] = ()
    vars: dict[str, Any] = field(default_factory=dict)
    line: int | None = None


@dataclass(frozen=True)
class Content:
    mode: Literal["sequence", "pool"] = "sequence"
    when_exhausted: Literal["stop", "wait"] = "stop"
    items: tuple[ContentItem, ...] = ()


@dataclass(frozen=True)
class Allowance:
    """A reviewed exception to the information-only check, with the written reason why: a ``phrase`` it lets
    through, or a ``rule`` id (a shipped or user rule, or ``ja-model``/``en-model``) whose findings it lets
    through; ``item`` limits it to one content item (by key)."""

    reason: str
    phrase: str = ""
    rule: str = ""
    item: str = ""


@dataclass(frozen=True)
class CampaignTracking:
    opens: bool = True
    clicks: bool = True


@dataclass(frozen=True)
class Campaign:
    """A checked campaign. ``from_name``/``from_address``/``reply_to`` are already defaulted from [identity];
    ``cadence`` is already merged with nurture.toml [cadence]."""

    name: str
    description: str
    language: Literal["ja", "en"]
    status: Literal["active", "paused"]
    priority: int
    from_name: str
    from_address: str
    reply_to: str
    segment: Segment
    cadence: Cadence
    content: Content
    allow: tuple[Allowance, ...]
    tracking: CampaignTracking
    path: Path
    #: The topic people choose on the sign-up form and the preferences page ("" = none: for everyone mailable);
    #: also set on ``segment.topic``, which is how segment selection honours prospects' choices.
    topic: str = ""
    #: "email" (``nurture send``) or "postal" (``nurture postal run``: a printed newsletter, about every 90 days).
    channel: Literal["email", "postal"] = "email"
    #: This campaign's share among a prospect's campaigns when ``[cadence] share = "weights"`` (nurture.plan.share).
    weight: float = 1.0
    #: The campaign a prospect continues with once this one's content has run out for them ("" = none).
    fallback: str = ""

    @property
    def items(self) -> tuple[ContentItem, ...]:
        return self.content.items

    def find_item(self, key: str) -> ContentItem | None:
        """The item whose key is ``key``, or None (deliveries name their item by key)."""
        return next((it for it in self.content.items if it.key == key), None)

    def item(self, ref: str | int) -> ContentItem:
        """The item with key ``ref``, or the ``ref``-th item (1-based); NotFound listing the keys otherwise."""
        found = self.find_item(str(ref))
        if found is not None:
            return found
        text = str(ref)
        if text.isdigit() and 1 <= int(text) <= len(self.content.items):
            return self.content.items[int(text) - 1]
        keys = ", ".join(f"{i}:{it.key}" for i, it in enumerate(self.content.items, 1))
        raise NotFound(f'campaign {self.name} has no item "{ref}"', hint=f"items are {keys}")


# --------------------------------------------------------------------------- the file's shape, for tomlschema


@dataclass(frozen=True)
class _FileTable:
    name: str
    language: Literal["ja", "en"]
    content: dict[str, Any]
    description: str = ""
    status: Literal["active", "paused"] = "active"
    priority: int = 0
    from_name: str | None = None
    from_address: str | None = None
    reply_to: str | None = None
    segment: dict[str, Any] = field(default_factory=dict)
    cadence: dict[str, Any] = field(default_factory=dict)
    allow: list[dict[str, Any]] = field(default_factory=list)
    tracking: dict[str, Any] = field(default_factory=dict)
    topic: str = ""
    channel: Literal["email", "postal"] = "email"
    weight: float = 1.0
    fallback: str = ""


@dataclass(frozen=True)
class _CadenceTable:
    interval_days: float | None = None
    interval_by_temperature: dict[str, float] | None = None
    start: date | None = None
    end: date | None = None
    send_days: list[str] | None = None
    send_hours: list[int] | None = None
    time_zone: str | None = None
    skip_japanese_holidays: bool | None = None
    company_holidays: list[str] | None = None
    monthly_cap: int | None = None


@dataclass(frozen=True)
class _ContentTable:
    mode: Literal["sequence", "pool"] = "sequence"
    when_exhausted: Literal["stop", "wait"] = "stop"
    items: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _ItemTable:
    subject: str
    template: str
    key: str | None = None
    text_template: str | None = None
    industries: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- loading


def display_path(path: Path) -> str:
    """``path`` as the user would type it: relative to the working directory when it is below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _check_identity_address(value: str, path: KeyPath, problems: Problems) -> None:
    if any(c in value for c in "\r\n\0"):
        problems.add(path, f"{dotted(path)} must not contain line breaks")
        return
    # Imported here for start-up time: email-validator costs ~40 ms to import and only campaign files that set
    # an address need it (the tracking server and the senders load campaigns but never import it otherwise).
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        problems.add(path, f'{dotted(path)} "{value}" is not a valid address: {exc}')


def _resolve_cadence(raw: _CadenceTable, config: Config, problems: Problems) -> Cadence:
    """Merge the file's [cadence] with nurture.toml [cadence] and check every rule."""
    base = config.cadence
    path: KeyPath = ("cadence",)
    interval = raw.interval_days if raw.interval_days is not None else base.interval_days
    if interval <= 0:
        problems.add(path + ("interval_days",), "cadence.interval_days must be more than 0 days")
    by_temp: dict[str, float] = {}
    for temperature, days in (raw.interval_by_temperature or {}).items():
        at = path + ("interval_by_temperature", temperature)
        if temperature not in TEMPERATURES:
            close = difflib.get_close_matches(temperature.lower(), TEMPERATURES, n=1)
            tip = f' (did you mean "{close[0]}"?)' if close else ""
            problems.add(
                at,
                f'cadence.interval_by_temperature: unknown temperature "{temperature}"{tip}; '
                f"use {', '.join(TEMPERATURES)}",
            )
        elif days is not None and days <= 0:
            problems.add(at, f"cadence.interval_by_temperature.{temperature} must be more than 0 days")
        elif days is not None:
            by_temp[temperature] = days
    if raw.start and raw.end and raw.end < raw.start:
        problems.add(path + ("end",), f"cadence.end {raw.end} is before cadence.start {raw.start}")
    days_list = raw.send_days if raw.send_days is not None else list(base.send_days)
    for day in days_list:
        if day not in cadence_rules.WEEKDAYS:
            close = difflib.get_close_matches(day.lower()[:3], cadence_rules.WEEKDAYS, n=1)
            tip = f' (did you mean "{close[0]}"?)' if close else ""
            problems.add(
                path + ("send_days",),
                f'cadence.send_days: unknown day "{day}"{tip}; use ' + ", ".join(cadence_rules.WEEKDAYS),
            )
    if not days_list:
        problems.add(path + ("send_days",), "cadence.send_days is empty: no mail could ever be sent")
    hours = raw.send_hours if raw.send_hours is not None else list(base.send_hours)
    if len(hours) != 2 or not 0 <= hours[0] < hours[1] <= 24:
        problems.add(
            path + ("send_hours",),
            f"cadence.send_hours {hours} must be [start, end) local hours with "
            "0 <= start < end <= 24, e.g. [9, 18] (18:00 itself is outside)",
        )
        hours = list(base.send_hours)
    zone = raw.time_zone if raw.time_zone is not None else base.time_zone
    try:
        cadence_rules.zone_named(zone)
    except ValueError as exc:
        problems.add(path + ("time_zone",), f"cadence.time_zone: {exc}")
        zone = "UTC"
    rules: list[CompanyHoliday] = []
    for index, text in enumerate(raw.company_holidays if raw.company_holidays is not None else base.company_holidays):
        try:
            rules.append(cadence_rules.parse_company_holiday(text))
        except ValueError as exc:
            where = path + ("company_holidays",) if raw.company_holidays is not None else path
            problems.add(where, f"cadence.company_holidays[{index}]: {exc}")
    if raw.monthly_cap is not None and raw.monthly_cap < 1:
        problems.add(path + ("monthly_cap",), "cadence.monthly_cap must be at least 1 (leave it out for no cap)")
    return Cadence(
        interval_days=float(interval),
        interval_by_temperature=by_temp,
        start=raw.start,
        end=raw.end,
        send_days=tuple(d for d in days_list if d in cadence_rules.WEEKDAYS),
        send_hours=(hours[0], hours[1]),
        time_zone=zone,
        skip_japanese_holidays=(
            raw.skip_japanese_holidays if raw.skip_japanese_holidays is not None else base.skip_japanese_holidays
        ),
        company_holidays=tuple(rules),
        monthly_cap=raw.monthly_cap,
    )


# Parsing only; rendering uses the sandboxed environments of nurture.compose.rendering.
_JINJA_SYNTAX = jinja2.Environment()


def _template_problem(config: Config, relative: str, path: KeyPath, key: str, problems: Problems) -> None:
    """Record a problem unless ``relative`` names an existing file inside the templates folder."""
    pure = PurePosixPath(relative.replace("\\", "/"))
    label = f'item "{key}"'
    if pure.is_absolute() or ".." in pure.parts or not relative.strip():
        problems.add(
            path, f'{label}: template "{relative}" must be a path inside the templates folder (relative, without "..")'
        )
        return
    folder = config.templates_dir
    target = folder / pure
    if target.is_file():
        return
    tip = ""
    siblings = [p.name for p in target.parent.iterdir() if p.is_file()] if target.parent.is_dir() else []
    close = difflib.get_close_matches(pure.name, siblings, n=1, cutoff=0.6)
    if close:
        tip = f' (did you mean "{(pure.parent / close[0]).as_posix()}"?)'
    problems.add(path, f'{label}: unknown template file "{relative}" (not found in {display_path(folder)}/){tip}')


def _load_item(table: Any, index: int, config: Config, problems: Problems, seen: dict[str, int]) -> ContentItem | None:
    path: KeyPath = ("content", "items", index)
    line = problems.source.line_of(path) if problems.source else None
    if not isinstance(table, dict):
        problems.add(path, "each content item must be a table ([[content.items]])")
        return None
    raw = build(_ItemTable, table, path, problems)
    if raw is None:
        return None
    key = raw.key if raw.key is not None else PurePosixPath(raw.template).stem
    key_path = path + ("key",) if raw.key is not None else path
    ok = True
    if not ITEM_KEY.match(key) or len(key) > MAX_ID:
        hint = 'set key = "…" on the item' if raw.key is None else "use letters, digits, '.', '_' and '-'"
        problems.add(
            key_path,
            f'item key "{key}" is not a valid id (ASCII letters, digits, ".", "_", "-", '
            f"at most {MAX_ID} characters); {hint}",
        )
        ok = False
    elif key in seen:
        problems.add(
            key_path,
            f'duplicate item key "{key}" (first used at line {seen[key]}); '
            "every item needs its own key: deliveries are recorded per key",
        )
        ok = False
    else:
        seen[key] = line or 0
    subject_path = path + ("subject",)
    if not raw.subject.strip():
        problems.add(subject_path, f'item "{key}": subject is empty')
        ok = False
    elif any(c in raw.subject for c in "\r\n\0"):
        problems.add(subject_path, f'item "{key}": subject must be one line (no line breaks)')
        ok = False
    else:
        try:
            _JINJA_SYNTAX.parse(raw.subject)
        except jinja2.TemplateSyntaxError as exc:
            problems.add(subject_path, f'item "{key}": subject is not a valid template: {exc.message}')
            ok = False
    before = len(problems.items)
    _template_problem(config, raw.template, path + ("template",), key, problems)
    if raw.text_template is not None:
        _template_problem(config, raw.text_template, path + ("text_template",), key, problems)
    if any(not i.strip() for i in raw.industries):
        problems.add(path + ("industries",), f'item "{key}": industries must not contain empty strings')
    if not ok or len(problems.items) != before:
        return None
    return ContentItem(
        key=key,
        subject=raw.subject,
        template=raw.template,
        text_template=raw.text_template,
        industries=tuple(raw.industries),
        vars=dict(raw.vars),
        line=line,
    )


def _line_number(problem: str) -> int:
    m = re.match(r"[^:]*:(\d+):", problem)
    return int(m.group(1)) if m else 0


def load_campaign(path: Path, config: Config) -> Campaign:
    """Read and check one campaign file. Raises ConfigError listing every problem as ``file:line: ...``."""
    source = TomlFile(path, display_path(Path(path)))
    problems = Problems(source)
    data = source.data
    # The header may be wrong and the sections still get checked: every problem is reported in one go.
    top = build(_FileTable, data, (), problems)

    def section(key: str, kind: type) -> Any:
        value = data.get(key, kind())
        return value if isinstance(value, kind) else kind()  # a wrong type was reported by build()

    name = data.get("name")
    if isinstance(name, str) and (not NAME.match(name) or len(name) > MAX_ID):
        problems.add(
            ("name",),
            f'name "{name}" must be lower-case letters, digits and "-", starting with a '
            f'letter or digit (e.g. "mfg-insights"), at most {MAX_ID} characters',
        )
    for key in ("from_address", "reply_to"):
        if isinstance(data.get(key), str) and data[key]:
            _check_identity_address(data[key], (key,), problems)
    weight = data.get("weight", 1.0)
    if isinstance(weight, (int, float)) and not isinstance(weight, bool) and not 0 < weight <= 1000:
        problems.add(("weight",), f"weight {weight} must be more than 0 (and at most 1000); 1 is an equal share")
    fallback = data.get("fallback", "")
    if isinstance(fallback, str) and fallback and (not NAME.match(fallback) or fallback == name):
        problems.add(
            ("fallback",),
            f'fallback "{fallback}" must be the name of another campaign (lower-case letters, digits and "-")',
        )
    if isinstance(data.get("from_name"), str) and any(c in data["from_name"] for c in "\r\n\0"):
        problems.add(("from_name",), "from_name must not contain line breaks")

    segment = parse_segment(section("segment", dict), problems)
    topic = data.get("topic", "")
    if isinstance(topic, str) and (len(topic) > MAX_TOPIC or any(c in topic for c in "\r\n\0")):
        problems.add(("topic",), f"topic must be one line of at most {MAX_TOPIC} characters")
    elif isinstance(topic, str) and topic.strip():
        segment = dataclasses.replace(segment, topic=topic.strip())
    raw_cadence = build(_CadenceTable, section("cadence", dict), ("cadence",), problems)
    cadence = _resolve_cadence(raw_cadence, config, problems) if raw_cadence is not None else Cadence()
    if top is not None and top.channel == "postal" and raw_cadence is not None and raw_cadence.interval_days is None:
        # A postal newsletter's own rhythm (SEEDS: every three months), not the e-mail interval of [cadence].
        cadence = dataclasses.replace(cadence, interval_days=config.postal.interval_days)

    content_raw = build(_ContentTable, section("content", dict), ("content",), problems)
    items: list[ContentItem] = []
    if content_raw is not None:
        seen: dict[str, int] = {}
        for index, table in enumerate(content_raw.items):
            item = _load_item(table, index, config, problems, seen)
            if item is not None:
                items.append(item)
        if not content_raw.items and "content" in data:
            problems.add(
                ("content",),
                "the campaign has no content items; add at least one [[content.items]] with subject and template",
            )
    allow: list[Allowance] = []
    for index, table in enumerate(section("allow", list)):
        raw = build(Allowance, table, ("allow", index), problems) if isinstance(table, dict) else None
        if raw is None:
            continue
        if not raw.phrase.strip() and not raw.rule.strip():
            problems.add(("allow", index), 'an [[allow]] needs phrase = "…" or rule = "rule-id"')
        elif not raw.reason.strip():
            problems.add(
                ("allow", index, "reason"),
                f'allow "{raw.phrase or raw.rule}": write the reason this is informational here (reason = "…")',
            )
        else:
            allow.append(raw)
    tracking = build(CampaignTracking, section("tracking", dict), ("tracking",), problems) or CampaignTracking()
    problems.items.sort(key=_line_number)  # read top to bottom, like a compiler's output
    problems.raise_if_any()
    assert top is not None and content_raw is not None
    identity = config.identity
    return Campaign(
        name=top.name,
        description=top.description,
        language=top.language,
        status=top.status,
        priority=top.priority,
        from_name=top.from_name if top.from_name is not None else identity.from_name,
        from_address=top.from_address if top.from_address is not None else identity.from_address,
        reply_to=top.reply_to if top.reply_to is not None else identity.reply_to,
        segment=segment,
        cadence=cadence,
        content=Content(mode=content_raw.mode, when_exhausted=content_raw.when_exhausted, items=tuple(items)),
        allow=tuple(allow),
        tracking=tracking,
        path=Path(path),
        topic=segment.topic,
        channel=top.channel,
        weight=float(top.weight),
        fallback=top.fallback,
    )


def error_lines(error: ConfigError) -> list[str]:
    """The separate ``file:line: ...`` problems inside one ConfigError (see tomlschema.Problems)."""
    lines = error.message.splitlines()
    if len(lines) > 1 and re.fullmatch(r"\d+ problems:", lines[0]):
        return [line.strip() for line in lines[1:]]
    return [error.message]


def campaign_files(config: Config) -> list[Path]:
    """Every ``*.toml`` directly in the campaigns folder, sorted by name."""
    folder = config.campaigns_dir
    return sorted(folder.glob("*.toml")) if folder.is_dir() else []


#: A campaign file with what loading it gave: the campaign, or the ConfigError listing its problems.
CampaignFile = tuple[Path, Campaign | None, ConfigError | None]


def load_each(config: Config) -> list[CampaignFile]:
    """Every campaign file of the workspace, each loaded on its own: one broken file does not hide the others."""
    out: list[CampaignFile] = []
    for path in campaign_files(config):
        try:
            out.append((path, load_campaign(path, config), None))
        except ConfigError as exc:
            out.append((path, None, exc))
    return out


def load_campaigns(
    config: Config, names: list[str] | None = None, *, broken: list[str] | None = None
) -> list[Campaign]:
    """Load the campaigns (all, or those called ``names``), sorted by priority (highest first), then name.

    Problems in any file that is needed are raised together as one ConfigError; a name nobody has is
    NotFound listing the available ones. With ``names``, a broken file that cannot be the one asked for
    (its file name differs and its name could be read) does not stop the others. With ``broken`` (a list),
    nothing is raised for broken files: their ``file:line: ...`` problems are appended to it and the good
    campaigns returned (``nurture send`` skips a broken file and sends the others); campaigns sharing a name
    are all left out then, since which one is meant cannot be known.
    """
    files = load_each(config)
    loaded = [campaign for _, campaign, _ in files if campaign is not None]
    unloadable = {path: error for path, _, error in files if error is not None}
    messages: list[str] = []
    first_seen: dict[str, Campaign] = {}
    for campaign in loaded:
        other = first_seen.setdefault(campaign.name, campaign)
        if other is not campaign:
            messages.append(
                f'{display_path(campaign.path)}: duplicate campaign name "{campaign.name}" '
                f"(also in {display_path(other.path)}); names must be unique"
            )
    known = {c.name for c in loaded}
    for campaign in loaded:
        if campaign.fallback and campaign.fallback not in known:
            messages.append(
                f'{display_path(campaign.path)}: fallback "{campaign.fallback}" is not a campaign '
                f"(campaigns: {', '.join(sorted(known))})"
            )
    if names:
        wanted = set(names)
        missing = wanted - {c.name for c in loaded}
        relevant = [e for p, e in unloadable.items() if p.stem in wanted or missing]
        messages = [m for m in messages if any(f'"{n}"' in m for n in wanted)]
    else:
        missing = set()
        relevant = list(unloadable.values())
    for error in relevant:
        messages.extend(error_lines(error))
    if messages and broken is not None:
        broken.extend(messages)
        loaded = [c for c in loaded if not any(f'"{c.name}"' in m and "duplicate" in m for m in messages)]
    elif messages:
        head = messages[0] if len(messages) == 1 else f"{len(messages)} problems:\n  " + "\n  ".join(messages)
        raise ConfigError(head)
    if missing and not (broken is not None and messages):  # else the one asked for is likely a broken file
        available = (
            ", ".join(sorted(c.name for c in loaded)) or f"none (no *.toml in {display_path(config.campaigns_dir)})"
        )
        raise NotFound(f"no campaign named {', '.join(sorted(missing))}", hint=f"available: {available}")
    chosen = [c for c in loaded if not names or c.name in names]
    return sorted(chosen, key=lambda c: (-c.priority, c.name))


# --------------------------------------------------------------------------------------------- warnings


def lint_campaign(campaign: Campaign) -> list[str]:
    """Suspicious but valid things, as ``file:line: ...`` warnings: an item limited to industries the
    segment can never contain (nobody would receive it); a campaign whose end date is in the past is left
    to the sending engine (it depends on today)."""
    warnings: list[str] = []
    where = display_path(campaign.path)
    segment = campaign.segment
    allowed = (segment.values("industry", "eq") or ()) + (segment.values("industry", "in") or ())
    excluded = set(segment.values("industry", "not_in") or ())
    for item in campaign.items:
        if not item.industries:
            continue
        possible = [i for i in item.industries if (not allowed or i in allowed) and i not in excluded]
        if not possible:
            rule = f"in {list(allowed)}" if allowed else f"not_in {sorted(excluded)}"
            warnings.append(
                f'{where}:{item.line or "?"}: item "{item.key}": industries {list(item.industries)} '
                f"cannot match the segment (industry {rule}); nobody would receive it"
            )
    return warnings
