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
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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


# --- the running tally: engagement kept up to date one event at a time ---------------------------------------

_US = timedelta(microseconds=1)
_DAY_US = 86_400_000_000


def _micros(t: datetime) -> int:
    """Microseconds since 1970-01-01 UTC: exact, so order and cap periods match :func:`engagement`'s."""
    return (t - _EPOCH) // _US


@dataclass
class Mail:
    """What later events of one delivery depend on: whether a weighted click proved its opens (``clicked``), how
    many events of each type took a per-mail slot (``slots``) and its counted opens as (µs, points) (a click
    arriving later takes them back)."""

    clicked: bool = False
    slots: dict[str, int] = field(default_factory=dict)
    opens: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Tally:
    """A prospect's engagement as a running state, so a new event costs O(1) instead of a fold over all events.

    A function of the events that can count (:func:`can_count`) and the rules (``digest``), not of time:
    ``sums[type] = (sum of points x weight x 0.5 ** (age at ref / half-life), ref µs)`` of the counted events;
    ``caps[type] = (period, slots used, events capped)`` of the latest cap period (capped: at least as many as
    the fold finds, as opens a later click proved stay in it; it only ever declines a take-back); ``mails`` by
    delivery; the (µs, id) of the last event folded (``last``); how many events can count (``events``) and the
    sum of their ids (``ids``), both checked against the table so events recorded without scoring are noticed
    (the sum also when the count was read in a snapshot older than the tally); how many counted (``counted``).
    :meth:`value` gives :func:`engagement`'s total at any instant from ``last`` on (equal to within float
    rounding, well under the 6 decimals both round to)."""

    digest: str
    events: int = 0
    ids: int = 0
    counted: int = 0
    last: tuple[int, int] = (-(2**62), 0)
    sums: dict[str, tuple[float, int]] = field(default_factory=dict)
    caps: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    mails: dict[int, Mail] = field(default_factory=dict)

    def value(self, at: datetime, rules: Rules) -> float | None:
        """The engagement total at ``at``; None before the last event (the model counts a future event at age
        0, which a decayed sum cannot express: the caller folds the events instead)."""
        now = _micros(at)
        if now < self.last[0]:
            return None
        total = 0.0
        for kind in sorted(self.sums):
            s, ref = self.sums[kind]
            total += s * _decay(rules.events[kind].half_life_days, now - ref)
        return round(total, 6)

    def dumps(self) -> str:
        """Compact JSON for ``prospects.score_state``."""
        return json.dumps(
            {
                "v": self.digest,
                "n": self.events,
                "x": self.ids,
                "c": self.counted,
                "l": list(self.last),
                "s": self.sums,
                "p": self.caps,
                "m": {str(d): [int(m.clicked), m.slots, m.opens] for d, m in self.mails.items()},
            },
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, text: str | None, rules: Rules) -> Tally | None:
        """The stored tally, or None when there is none or it was made under other rules."""
        if not text:
            return None
        try:
            d = json.loads(text)
            if d.get("v") != rules.digest():
                return None
            return cls(
                digest=d["v"],
                events=int(d["n"]),
                ids=int(d["x"]),
                counted=int(d["c"]),
                last=(int(d["l"][0]), int(d["l"][1])),
                sums={k: (float(v[0]), int(v[1])) for k, v in d["s"].items()},
                caps={k: (int(v[0]), int(v[1]), int(v[2])) for k, v in d["p"].items()},
                mails={
                    int(k): Mail(bool(v[0]), dict(v[1]), [(int(t), float(p)) for t, p in v[2]])
                    for k, v in d["m"].items()
                },
            )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return None  # unreadable: fold from the events (and store a fresh one)


def _decay(half_life_days: float, micros: int) -> float:
    """``0.5 ** (age in days / half-life)``, the age computed as :func:`engagement` does."""
    return 0.5 ** (micros / 10**6 / 86400.0 / half_life_days) if half_life_days > 0 else 1.0


def tally(events: Iterable[EventLike], rules: Rules) -> Tally:
    """The tally of ``events`` (all of a prospect's), as :func:`engagement` folds them."""
    out = Tally(rules.digest())
    ordered = sorted((e for e in events if e.type in rules.events), key=lambda e: (e.occurred_at, e.id))
    weights = {e.id: _weight(_label_class(e, rules), rules) for e in ordered}
    live = [e for e in ordered if weights[e.id] > 0]
    for e in live:
        if e.type == "clicked" and e.delivery_id:
            out.mails.setdefault(e.delivery_id, Mail()).clicked = True
    for e in live:
        _step(out, e, weights[e.id], rules)
    return out


def advance(t: Tally, new: Iterable[EventLike], rules: Rules) -> Tally | None:
    """``t`` with ``new`` events folded in, or None when they cannot be added in order (one at or before the last
    folded, or a click whose mail has counted opens the tally cannot take back exactly): the caller folds all
    events then. Events that cannot count are skipped. ``t`` is changed in place."""
    for e in sorted((e for e in new if e.type in rules.events), key=lambda e: (e.occurred_at, e.id)):
        w = _weight(_label_class(e, rules), rules)
        if w <= 0:
            continue
        if (_micros(e.occurred_at), e.id) <= t.last:
            return None
        if e.type == "clicked" and e.delivery_id:
            mail = t.mails.setdefault(e.delivery_id, Mail())
            if not mail.clicked and not _take_back_opens(t, mail, rules):
                return None
            mail.clicked = True
        _step(t, e, w, rules)
    return t


def _take_back_opens(t: Tally, mail: Mail, rules: Rules) -> bool:
    """A first click proves its mail's opens: they stop counting. Exact only when they all lie in the open cap's
    current period with nothing capped there yet (else a freed slot would let a later open count)."""
    rule = rules.events.get("opened")
    if mail.opens:
        if rule is None:
            return False
        if rule.cap:
            period, used, capped = t.caps.get("opened", (0, 0, 0))
            if capped or any((at // _DAY_US) // rule.cap_days != period for at, _ in mail.opens):
                return False
            if used > len(mail.opens):
                t.caps["opened"] = (period, used - len(mail.opens), capped)
            else:  # an empty period is no period (as a fold that never counted these opens has it)
                del t.caps["opened"]
        s, ref = t.sums["opened"]
        s -= sum(points * _decay(rule.half_life_days, ref - at) for at, points in mail.opens)
        t.sums["opened"] = (s, ref)
        t.counted -= len(mail.opens)
        mail.opens = []
    mail.slots.pop("opened", None)
    return True


def _step(t: Tally, e: EventLike, w: float, rules: Rules) -> None:
    """Fold one event that can count (weight ``w`` > 0), the last so far, as :func:`engagement` does."""
    rule = rules.events[e.type]
    at = _micros(e.occurred_at)
    t.events += 1
    t.ids += e.id
    t.last = (at, e.id)
    mail = t.mails.get(e.delivery_id) if e.delivery_id else None
    if e.type == "opened" and mail is not None and mail.clicked:
        return
    if rule.per_mail and e.delivery_id:
        if mail is None:
            mail = t.mails[e.delivery_id] = Mail()
        if mail.slots.get(e.type, 0) >= rule.per_mail:
            return
        mail.slots[e.type] = mail.slots.get(e.type, 0) + 1
    if rule.cap:
        period = (at // _DAY_US) // rule.cap_days
        last_period, used, capped = t.caps.get(e.type, (period, 0, 0))
        if last_period != period:
            used, capped = 0, 0
        if used >= rule.cap:
            t.caps[e.type] = (period, used, capped + 1)
            return
        t.caps[e.type] = (period, used + 1, capped)
    points = rule.points * w
    s, ref = t.sums.get(e.type, (0.0, at))
    t.sums[e.type] = (s * _decay(rule.half_life_days, at - ref) + points, at)
    t.counted += 1
    if e.type == "opened" and e.delivery_id:
        if mail is None:
            mail = t.mails[e.delivery_id] = Mail()
        mail.opens.append((at, points))
