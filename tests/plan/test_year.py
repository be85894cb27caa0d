"""A year of scheduled runs (issue 18): every prospect with content left is mailed about every two weeks in their
own hours, campaigns that share a prospect take turns, a campaign that runs out hands over to its fallback, and
every prospect who goes silent is named by nurture.plan.silence. Fixed clock, 15 prospects, memory sender; runs
at the instants the README's schedule (every 15 minutes around the clock) fires, skipping runs in which nothing
can change (see cadence_workspace.simulate)."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cadence_workspace import make, sent, simulate

from nurture.core import config as configuration
from nurture.plan.cadence import japanese_holiday
from nurture.plan.campaigns import load_campaigns
from nurture.plan.silence import silent_prospects
from nurture.store import db

START = datetime(2027, 1, 4, 0, 0, tzinfo=UTC)  # a Monday, after the new-year company holiday
END = START + timedelta(days=365)


def test_a_year_of_scheduled_runs(tmp_path, db_url):
    make(tmp_path, db_url)
    runs = simulate(tmp_path, START, END)
    mails = sent(tmp_path)
    by_prospect: dict[str, list] = defaultdict(list)
    for m in mails:
        by_prospect[m.email].append(m)

    # Windows: every mail inside the prospect's own hours, on a weekday, not on a Japanese holiday for Tokyo.
    for m in mails:
        zone = ZoneInfo(m.time_zone or "Asia/Tokyo")
        local = m.sent_at.astimezone(zone)
        assert local.weekday() < 5, m
        if m.campaign == "ops-en":
            assert 9 <= local.hour < 16 and m.time_zone == "America/New_York", m
        else:
            assert 9 <= local.hour < 18 and not japanese_holiday(local.date()), m
            assert not (local.month == 12 and local.day >= 29) and not (local.month == 8 and 13 <= local.day <= 16)

    # Gaps: never closer than min_gap_days (10), about every two weeks for everyone with content left.
    gaps = []
    for email, ms in by_prospect.items():
        if email.startswith("shop"):
            continue
        times = [m.sent_at for m in ms]
        assert times[0] - START < timedelta(days=8), f"{email} first mailed {times[0]}"
        gaps += [(b - a).total_seconds() / 86400 for a, b in itertools.pairwise(times)]
        assert len(ms) >= 22, f"{email}: only {len(ms)} mails in a year"
        assert len({m.item_key for m in ms}) == len(ms), f"{email} got an item twice"
    assert min(gaps) >= 10
    assert 14 <= statistics.median(gaps) <= 15.5, statistics.median(gaps)
    assert max(gaps) <= 21, max(gaps)  # a weekend plus a holiday week at most, never months

    # New York prospects are reached (runs around the clock), in their own hours.
    assert all(len(by_prospect[f"ops{i}@ops{i}.com"]) >= 22 for i in range(3))

    # Shares: a prospect in news-ja and mfg-b gets them in turn from the start (round-robin).
    for i in range(4):
        ms = by_prospect[f"both{i}@ryoho{i}.co.jp"]
        share = Counter(m.campaign for m in ms)
        assert abs(share["news-ja"] - share["mfg-b"]) <= 1, share
        assert {ms[0].campaign, ms[1].campaign} == {"news-ja", "mfg-b"}

    # Fallback: tips-ja's four items, then evergreen-ja, without a pause.
    for i in range(2):
        ms = by_prospect[f"logi{i}@butsuryu{i}.co.jp"]
        assert [m.campaign for m in ms[:4]] == ["tips-ja"] * 4
        assert {m.campaign for m in ms[4:]} == {"evergreen-ja"} and len(ms) >= 22

    # Languages: zone-less, language-less .co.jp prospects never get the English campaign.
    assert all(m.campaign != "ops-en" for m in mails if not m.email.startswith("ops"))

    # Silence: everyone not mailed in the last four weeks is named, with the campaign that ran out.
    cfg = configuration.load(tmp_path / "nurture.toml")
    with db.engine_for(cfg.database_url).connect() as conn:
        silent = {s.email: s for s in silent_prospects(conn, load_campaigns(cfg), cfg, END)}
    quiet = {e for e, ms in by_prospect.items() if END - ms[-1].sent_at > timedelta(days=28)}
    assert quiet == {"shop0@kouri0.co.jp", "shop1@kouri1.co.jp"}
    assert quiet <= set(silent), (quiet, silent)
    assert silent["shop0@kouri0.co.jp"].kind == "exhausted" and "short-ja" in silent["shop0@kouri0.co.jp"].reason
    assert set(silent) == quiet, {e: s.reason for e, s in silent.items()}
    print(f"\n{runs} runs, {len(mails)} mails, median gap {statistics.median(gaps):.1f} d")


def test_weights_share_two_to_one(tmp_path, db_url):
    from cadence_workspace import CAMPAIGNS

    # Both campaigns are due weekly, so the 10-day gap, not their intervals, limits the mail: the weights decide.
    campaigns = {n: CAMPAIGNS[n].replace("interval_days = 14", "interval_days = 7") for n in ("news-ja", "mfg-b")}
    campaigns["news-ja"] = campaigns["news-ja"].replace("priority = 10\n", "priority = 10\nweight = 2\n")
    make(tmp_path, db_url, extra_config='[cadence]\nshare = "weights"\n', campaigns=campaigns)
    simulate(tmp_path, START, START + timedelta(days=126))
    mails = [m for m in sent(tmp_path) if m.email.startswith("both")]
    both = Counter(m.campaign for m in mails)
    assert 1.7 <= both["news-ja"] / both["mfg-b"] <= 2.3, both
    for i in range(4):  # per prospect: two of one for one of the other, in turn (a a b a a b ...)
        seq = [m.campaign for m in mails if m.email == f"both{i}@ryoho{i}.co.jp"]
        assert all(seq[k : k + 3].count("mfg-b") <= 1 for k in range(len(seq) - 2)), seq
