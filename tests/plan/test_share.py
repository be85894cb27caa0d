"""Whose turn it is when a prospect is due in several campaigns (nurture.plan.share.choose), pure."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from nurture.plan.share import Contender, Mailed, choose

A = Contender("a", priority=10)
B = Contender("b", priority=5)
T0 = datetime(2027, 1, 4, 1, tzinfo=UTC)


def turns(policy: str, contenders: list[Contender], n: int) -> list[str]:
    """``n`` successive choices, each mail recorded as the prospect's latest of its campaign."""
    history: dict[str, Mailed] = {}
    out = []
    for i in range(n):
        name = choose(policy, contenders, history)
        old = history.get(name, Mailed())
        history[name] = Mailed(T0 + timedelta(days=14 * i), old.recent + 1)
        out.append(name)
    return out


def test_round_robin_alternates_and_priority_breaks_the_first_tie():
    assert turns("round-robin", [B, A], 6) == ["a", "b", "a", "b", "a", "b"]


def test_round_robin_gives_the_turn_to_the_campaign_that_mailed_longest_ago():
    history = {"a": Mailed(T0, 3), "b": Mailed(T0 - timedelta(days=30), 3)}
    assert choose("round-robin", [A, B], history) == "b"


def test_priority_is_the_higher_one_every_time():
    assert turns("priority", [A, B], 4) == ["a"] * 4


@pytest.mark.parametrize(("weight", "expected"), [(2.0, 2.0), (3.0, 3.0), (1.0, 1.0)])
def test_weights_give_shares_in_proportion(weight, expected):
    got = Counter(turns("weights", [Contender("a", 10, weight), B], 24))
    assert got["a"] / got["b"] == pytest.approx(expected, rel=0.15)


def test_weights_never_mail_one_campaign_many_times_in_a_row_when_shares_are_equal():
    seq = turns("weights", [A, B, Contender("c", 1)], 9)
    assert seq[:3] == ["a", "b", "c"] and Counter(seq) == {"a": 3, "b": 3, "c": 3}


def test_choose_needs_a_contender():
    with pytest.raises(ValueError):
        choose("round-robin", [], {})
