"""The score as a pure function: facts about a prospect and its events + rules + an instant -> the score.

Both the online path (a listener on the event door) and the full recompute call :func:`engagement` and
:func:`fit` with the same inputs, so they cannot disagree: "incremental equals recompute" holds by construction,
and a property test checks it. No I/O here.

Engagement: each event of a type named in ``rules.events`` counts ``points x label weight x 0.5 ** (age /
half-life)``. Events are taken in (occurred_at, id) order; a type counts at most ``cap`` events per fixed
``cap_days`` period and ``per_mail`` per delivery. An open of a mail whose click counted is not counted again
(the click proved the open). Fit: industry + size band + title (highest match each) + strengths x points +
colleagues engaged at the same company.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from nurture.score.rules import Fit, Points, Rules

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STRENGTHS = (
    "existing_business",
    "empathy",
    "contribution",
    "multiple_contacts",
    "decision_maker",
    "invested",
)


class EventLike(Protocol):
    """What scoring reads of an event: an :class:`EventFact`, or a database row with these columns."""

    @property
    def id(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def label(self) -> str: ...
    @property
    def confidence(self) -> float: ...
    @property
    def delivery_id(self) -> int | None: ...
    @property
    def campaign(self) -> str: ...
    @property
    def item_key(self) -> str: ...


@dataclass(frozen=True)
class EventFact:
    """The columns of one event that scoring reads."""

    id: int
    type: str
    occurred_at: datetime
    label: str = "unknown"
    confidence: float = 0.5
    delivery_id: int | None = None
    campaign: str = ""
    item_key: str = ""


@dataclass
class Counted:
    """What one event gave: ``points`` now (0 when ignored) and ``why`` (``counted`` | ``machine`` | ``cap`` |
    ``per_mail`` | ``click_counted`` | ``weight``)."""

    event: EventLike
    points: float
    why: str
    label: str  # the label class used: human | unknown | machine | "" (types without labels)


@dataclass
class Engagement:
    total: float = 0.0
    counted: list[Counted] = field(default_factory=list)


def _label_class(e: EventLike, rules: Rules) -> str:
    if e.type not in rules.labels.types:
        return ""
    if e.label == "human" and e.confidence < rules.labels.human_min_confidence:
        return "unknown"
    return e.label if e.label in ("human", "machine") else "unknown"


def _weight(label: str, rules: Rules) -> float:
    if not label:
        return 1.0
    return float(getattr(rules.labels, label))


def can_count(kind: str, label: str | None, confidence: float | None, rules: Rules) -> bool:
    """Whether an event of ``kind`` with this label can move anything: a type without a rule, or a label class
    whose weight is 0 (e.g. machine opens), gives no points, takes no cap or per-mail slot, proves no open and
    is not a counted event, so the score of everyone stays what it was at any instant (the online path skips
    rescoring for it; exactness holds because the model ignores such events the same way)."""
    if kind not in rules.events:
        return False
    e = EventFact(0, kind, _EPOCH, label or "unknown", float(confidence if confidence is not None else 0.5))
    return _weight(_label_class(e, rules), rules) > 0


def engagement(events: Iterable[EventLike], rules: Rules, at: datetime) -> Engagement:
    """The engagement score at ``at`` from ``events`` (any order; those after ``at`` count as age 0)."""
    ordered = sorted((e for e in events if e.type in rules.events), key=lambda e: (e.occurred_at, e.id))
    out = Engagement()
    per_period: dict[tuple[str, int], int] = {}
    per_mail: dict[tuple[str, int], int] = {}
    clicked_mails: set[int] = set()
    # First pass: which mails had a counted click (so their opens are not counted again).
    label_of = {e.id: _label_class(e, rules) for e in ordered}
    for e in ordered:
        if e.type == "clicked" and e.delivery_id and _weight(label_of[e.id], rules) > 0:
            clicked_mails.add(e.delivery_id)
    for e in ordered:
        rule = rules.events[e.type]
        label = label_of[e.id]
        w = _weight(label, rules)
        if w <= 0:
            out.counted.append(Counted(e, 0.0, "machine" if label == "machine" else "weight", label))
            continue
        if e.type == "opened" and e.delivery_id in clicked_mails:
            out.counted.append(Counted(e, 0.0, "click_counted", label))
            continue
        if rule.per_mail and e.delivery_id:
            key = (e.type, e.delivery_id)
            if per_mail.get(key, 0) >= rule.per_mail:
                out.counted.append(Counted(e, 0.0, "per_mail", label))
                continue
            per_mail[key] = per_mail.get(key, 0) + 1
        if rule.cap:
            period = (e.occurred_at - _EPOCH).days // rule.cap_days
            pkey = (e.type, period)
            if per_period.get(pkey, 0) >= rule.cap:
                out.counted.append(Counted(e, 0.0, "cap", label))
                continue
            per_period[pkey] = per_period.get(pkey, 0) + 1
        age = max(0.0, (at - e.occurred_at).total_seconds() / 86400.0)
        decay = 0.5 ** (age / rule.half_life_days) if rule.half_life_days > 0 else 1.0
        points = rule.points * w * decay
        out.counted.append(Counted(e, points, "counted", label))
        out.total += points
    out.total = round(out.total, 6)
    return out


@dataclass(frozen=True)
class ProspectFacts:
    """The prospect columns fit reads."""

    id: int
    email: str = ""
    company: str = ""
    title: str = ""
    industry: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)
    strengths: Mapping[str, int] = field(default_factory=dict)


@functools.lru_cache(maxsize=4096)
def _pattern(word: str) -> re.Pattern[str]:
    """ASCII words match at the start of a word ("manufactur" matches "Manufacturing", "cto" is not in
    "director"); other words (Japanese) match anywhere."""
    w = unicodedata.normalize("NFKC", word).lower()
    if w.isascii():
        return re.compile(r"(?<![a-z0-9])" + re.escape(w))
    return re.compile(re.escape(w))


@functools.lru_cache(maxsize=65536)
def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def _matches(text: str, words: Sequence[str]) -> bool:
    norm = _norm(text)
    return any(_pattern(word).search(norm) for word in words)


def _best(text: str, table: Sequence[Points]) -> tuple[float, str]:
    best = (0.0, "")
    for p in table:
        if text and _matches(text, p.words) and p.points > best[0]:
            best = (float(p.points), p.words[0])
    return best


def employees(attributes: Mapping[str, Any], fit: Fit) -> int | None:
    for key in fit.size_attributes:
        value = attributes.get(key)
        if value in (None, ""):
            continue
        digits = re.sub(r"[^0-9]", "", unicodedata.normalize("NFKC", str(value)).split(".")[0])
        if digits:
            return int(digits)
    return None


_COMPANY_NOISE = re.compile(
    r"株式会社|有限会社|合同会社|\(株\)|\(有\)|㈱|㈲|\b(inc|corp|corporation|co|ltd|llc|limited|kk|k\.k|gmbh)\b\.?"
)


def company_key(company: str, email: str, fit: Fit) -> str:
    """The group of colleagues: the normalised company name (NFKC, lower case, without 株式会社 / Inc. / Co., Ltd.,
    spaces and punctuation), else the e-mail domain unless it is a free-mail domain; "" = no group."""
    name = unicodedata.normalize("NFKC", company or "").lower()
    name = _COMPANY_NOISE.sub("", name)
    name = re.sub(r"[\s\W_]+", "", name)
    if name:
        return "c:" + name
    domain = email.rsplit("@", 1)[-1].strip().lower() if "@" in email else ""
    if domain and domain not in fit.free_mail_domains:
        return "d:" + domain
    return ""


def fit(p: ProspectFacts, rules: Rules, engaged_colleagues: int) -> tuple[float, dict[str, float]]:
    """The fit score and its parts (rule name -> points)."""
    f = rules.fit
    parts: dict[str, float] = {}
    points, word = _best(p.industry, f.industries)
    if points:
        parts[f"industry:{word}"] = points
    size = employees(p.attributes, f)
    if size is not None:
        for band in f.sizes:
            if size >= band.min and (not band.max or size < band.max):
                parts[f"size:{band.min}-{band.max or ''}"] = float(band.points)
                break
    points, word = _best(p.title, f.titles)
    if points:
        parts[f"title:{word}"] = points
    for name in STRENGTHS:
        level = max(0, min(3, int(p.strengths.get(name) or 0)))
        if level:
            parts[f"strength:{name}"] = level * float(getattr(f, f"strength_{name}"))
    if engaged_colleagues > 0:
        parts["colleagues"] = min(f.colleagues_max, engaged_colleagues * f.colleague_points)
    return round(sum(parts.values()), 6), parts


def rank_of(total: float, rules: Rules) -> str:
    t = rules.thresholds
    return "A" if total >= t.rank_a else "B" if total >= t.rank_b else "C"


def temperature_of(engagement_score: float, rules: Rules) -> str:
    t = rules.thresholds
    return "hot" if engagement_score >= t.hot else "warm" if engagement_score >= t.warm else "cold"


def stage_of(total: float, current: str, rules: Rules) -> str:
    """SQL from the threshold on; below it the current stage stays, except a scored SQL when ``sql_demotes``."""
    t = rules.thresholds
    if total >= t.sql:
        return "SQL"
    if current == "SQL":
        return "MQL" if t.sql_demotes else "SQL"
    return current or "MQL"
