"""Which campaign a prospect due in several campaigns gets now (``[cadence] share``). Pure; no database.

A prospect gets at most one nurture mail per ``min_gap_days`` whatever the policy; the policy only decides whose
turn it is when two or more campaigns would mail them now:

- ``round-robin`` (default): the campaign that mailed them longest ago (never counts as longest); ties go to
  the higher priority, then the name. Two newsletters to one prospect alternate.
- ``weights``: each campaign's share of their mails over the last :data:`WINDOW_DAYS` days follows the campaign
  file's ``weight`` (2 and 1: two mails of the first for one of the second). The campaign that would stay least
  above its share after this mail (smallest (mails + 1) / weight) goes next; ties as for round-robin.
- ``priority``: the highest priority every time (a lower campaign waits until the higher has nothing to send).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

POLICIES = ("round-robin", "weights", "priority")
#: How far back ``weights`` counts a prospect's mails: long enough for a few turns of every campaign, short enough
#: that a campaign added later catches up over months, not by mailing the same prospect several times in a row.
WINDOW_DAYS = 365


@dataclass(frozen=True)
class Mailed:
    """A prospect's history with one campaign: the latest mail and the mails within :data:`WINDOW_DAYS`."""

    last: datetime | None = None
    recent: int = 0


@dataclass(frozen=True)
class Contender:
    """A campaign that would mail the prospect now."""

    campaign: str
    priority: int
    weight: float = 1.0


def choose(policy: str, contenders: Sequence[Contender], history: Mapping[str, Mailed]) -> str:
    """The name of the contender whose turn it is under ``policy`` (see the module docstring)."""
    if not contenders:
        raise ValueError("choose() needs at least one contender")

    def never_or_last(c: Contender) -> float:
        last = history.get(c.campaign, Mailed()).last
        return last.timestamp() if last else float("-inf")

    def tie_break(c: Contender) -> tuple[int, str]:
        return (-c.priority, c.campaign)

    if policy == "priority":
        return min(contenders, key=tie_break).campaign
    if policy == "weights":
        return min(
            contenders,
            key=lambda c: ((history.get(c.campaign, Mailed()).recent + 1) / c.weight, never_or_last(c), *tie_break(c)),
        ).campaign
    return min(contenders, key=lambda c: (never_or_last(c), *tie_break(c))).campaign
