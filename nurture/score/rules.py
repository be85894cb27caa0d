"""The scoring rules: one versioned TOML file (``scoring.toml`` beside the config), checked like the config.

Every number of the score lives here, with defaults from the seeds (SEEDS 004: attribute + behaviour score,
A/B/C, hot/warm/cold, SQL at a total of 80; SEEDS 002: the six relationship strengths). The shipped
``scoring.example.toml`` documents every key. :func:`load` reads a file and raises one
:class:`~nurture.core.errors.ConfigError` naming ``file:line`` of every problem; :func:`for_config` finds the
file of a configuration (or the defaults when there is none). This module does no I/O besides reading the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from nurture.core.config import Config
from nurture.core.tomlschema import Problems, TomlFile, build

FILE = "scoring.toml"


@dataclass(frozen=True)
class Points:
    """Points for prospects whose field contains one of ``words`` (case-insensitive, NFKC; ASCII words match at
    the start of a word, so "manufactur" matches "Manufacturing" and "cto" does not match "director")."""

    words: list[str]
    points: float


@dataclass(frozen=True)
class SizeBand:
    """Points for a company size (employees) in ``[min, max)`` (``max`` 0 = no upper bound)."""

    min: int
    points: float
    max: int = 0


@dataclass(frozen=True)
class Fit:
    """Who they are (the attribute score)."""

    industries: tuple[Points, ...] = (
        Points(["製造", "manufactur"], 15),
        Points(["物流", "運輸", "logistics", "transport"], 15),
        Points(["建設", "construction"], 10),
        Points(["卸売", "wholesale"], 8),
    )
    #: Keys of ``prospects.attributes`` holding the number of employees (first present wins).
    size_attributes: list[str] = field(default_factory=lambda: ["employees", "従業員数", "size", "社員数"])
    sizes: tuple[SizeBand, ...] = (
        SizeBand(min=1, max=20, points=2),
        SizeBand(min=20, max=300, points=10),
        SizeBand(min=300, max=0, points=6),
    )
    #: Title words -> points; the highest match counts (one title, one role).
    titles: tuple[Points, ...] = (
        Points(["代表取締役", "社長", "CEO", "president", "owner", "founder", "オーナー"], 20),
        Points(["取締役", "役員", "director", "CxO", "CTO", "CFO", "COO", "VP", "vice president", "head of"], 15),
        Points(["部長", "本部長", "general manager"], 12),
        Points(["課長", "manager", "マネージャー"], 8),
        Points(["主任", "係長", "リーダー", "lead", "supervisor"], 4),
    )
    #: Points per level (0-3) of each relationship strength (prospects.strength_*; SEEDS 002).
    strength_existing_business: float = 4
    strength_empathy: float = 2
    strength_contribution: float = 2
    strength_multiple_contacts: float = 3
    strength_decision_maker: float = 4
    strength_invested: float = 3
    #: Points per other engaged contact at the same company (same normalised company name, or the same e-mail
    #: domain when the company is empty; free-mail domains never group), up to ``colleagues_max``.
    colleague_points: float = 5
    colleagues_max: float = 15
    #: A colleague counts as engaged from this engagement score on.
    colleague_engaged_at: float = 10
    #: Groups larger than this get no colleague points (a placeholder company name shared by many rows).
    colleague_group_max: int = 200
    free_mail_domains: list[str] = field(
        default_factory=lambda: [
            "gmail.com",
            "googlemail.com",
            "yahoo.co.jp",
            "yahoo.com",
            "ymail.ne.jp",
            "hotmail.com",
            "hotmail.co.jp",
            "outlook.com",
            "outlook.jp",
            "live.jp",
            "live.com",
            "icloud.com",
            "me.com",
            "mac.com",
            "aol.com",
            "docomo.ne.jp",
            "ezweb.ne.jp",
            "au.com",
            "softbank.ne.jp",
            "i.softbank.jp",
            "nifty.com",
            "biglobe.ne.jp",
            "so-net.ne.jp",
            "ocn.ne.jp",
            "proton.me",
            "protonmail.com",
        ]
    )


@dataclass(frozen=True)
class EventRule:
    """Points of one event type. ``half_life_days`` 0 = never decays. At most ``cap`` events of the type count
    per ``cap_days``-day period (fixed periods from 1970-01-01 UTC; 0 = no cap), and at most ``per_mail`` per
    delivery (0 = no limit)."""

    points: float
    half_life_days: float = 30
    cap: int = 0
    cap_days: int = 30
    per_mail: int = 0


def _default_events() -> dict[str, EventRule]:
    return {
        "opened": EventRule(points=1, half_life_days=14, cap=10, cap_days=30, per_mail=1),
        "clicked": EventRule(points=6, half_life_days=30, cap=10, cap_days=30, per_mail=3),
        "replied": EventRule(points=15, half_life_days=60, cap=5, cap_days=30),
        "seminar_attended": EventRule(points=20, half_life_days=90, cap=3, cap_days=30),
        "document_downloaded": EventRule(points=10, half_life_days=60, cap=5, cap_days=30),
        "met": EventRule(points=25, half_life_days=180, cap=3, cap_days=30),
        "signed_up": EventRule(points=5, half_life_days=90, cap=1, cap_days=365),
        "inquired": EventRule(points=40, half_life_days=90, cap=2, cap_days=30),
        "unsubscribed": EventRule(points=-30, half_life_days=0),
        "complained": EventRule(points=-60, half_life_days=0),
    }


@dataclass(frozen=True)
class Labels:
    """How much an open or a click counts by its bot label (track.botdetect). A ``human`` label with a
    confidence below ``human_min_confidence`` counts as ``unknown``."""

    human: float = 1.0
    unknown: float = 0.3
    machine: float = 0.0
    human_min_confidence: float = 0.6
    #: The event types these weights apply to; other types (imports, forms) always count fully.
    types: list[str] = field(default_factory=lambda: ["opened", "clicked"])


@dataclass(frozen=True)
class Thresholds:
    """Rank from the total, temperature from the engagement score (decayed, so it reflects recency), stage SQL
    from the total."""

    rank_a: float = 60
    rank_b: float = 30
    hot: float = 30
    warm: float = 10
    sql: float = 80
    #: false: once scoring moved a prospect to SQL, decay never moves it back (the seller owns it now).
    sql_demotes: bool = False

    def __post_init__(self) -> None:
        if self.rank_a < self.rank_b:
            raise ValueError("rank_a must be >= rank_b")
        if self.hot < self.warm:
            raise ValueError("hot must be >= warm")


@dataclass(frozen=True)
class Fields:
    """Who wins for each field: ``derived`` (scoring writes it) or ``hand`` (scoring never writes it; the value
    set by hand or by import stays, and ``prospects show`` still shows the derived one). Rank is always
    derived."""

    temperature: Literal["derived", "hand"] = "derived"
    stage: Literal["derived", "hand"] = "derived"


@dataclass(frozen=True)
class Rules:
    """The whole rule set. ``version`` is the marketer's own label, shown in history details."""

    version: str = "default"
    fit: Fit = field(default_factory=Fit)
    events: dict[str, EventRule] = field(default_factory=_default_events)
    labels: Labels = field(default_factory=Labels)
    thresholds: Thresholds = field(default_factory=Thresholds)
    fields: Fields = field(default_factory=Fields)
    #: How often ``nurture serve`` runs the decay pass (minutes).
    decay_every_minutes: float = 10
    source: str = field(default="(defaults)", metadata={"toml": "__source__"})

    def digest(self) -> str:
        """A short hash of the rules (not the source), for history details (computed once per rule set)."""
        cached = self.__dict__.get("_digest")
        if cached:
            return str(cached)
        data = asdict(self)
        data.pop("source", None)
        value = hashlib.sha256(json.dumps(_plain(data), sort_keys=True, default=str).encode()).hexdigest()[:12]
        object.__setattr__(self, "_digest", value)  # frozen: a cache, not a field
        return value


def _plain(value: object) -> object:
    """Numbers as floats (15 and 15.0 are one rule), tuples as lists: the digest of equal rules is equal."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


DEFAULT = Rules()


def load(path: Path | str, display: str | None = None) -> Rules:
    """Read and check a rules file; a ConfigError naming ``file:line`` of every problem. Keys not written keep
    their defaults; an ``[events]`` table replaces only the types it names."""
    source = TomlFile(Path(path), display)
    table = dict(source.data)
    problems = Problems(source)
    events_table = table.pop("events", None)
    rules = build(Rules, table, (), problems)
    events = dict(DEFAULT.events)
    if events_table is not None:
        if not isinstance(events_table, dict):
            problems.add(("events",), "[events] must be a table of event types")
        else:
            for name, value in events_table.items():
                if not isinstance(value, dict):
                    problems.add(("events", name), f"[events.{name}] must be a table (points = ..., ...)")
                    continue
                rule = build(EventRule, value, ("events", name), problems)
                if rule is not None:
                    if rule.half_life_days < 0 or rule.cap < 0 or rule.cap_days < 1 or rule.per_mail < 0:
                        problems.add(
                            ("events", name),
                            f"[events.{name}]: half_life_days, cap, per_mail must be >= 0 and cap_days >= 1",
                        )
                    events[name] = rule
    problems.raise_if_any()
    from dataclasses import replace

    return replace(rules, events=events, source=str(source.display))


def for_config(config: Config) -> Rules:
    """The rules of ``config``: ``scoring.toml`` in the config's folder, or the defaults when there is none."""
    path = config.root / FILE
    return load(path) if path.exists() else DEFAULT
