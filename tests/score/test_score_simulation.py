"""A simulated population, recorded through the real bot detection and the online scoring: hidden interest,
Apple's and Google's proxies opening every mail right after delivery, mail scanners clicking every link within a
second, and people opening and clicking later and more sparsely. The top of the ranking is the interested."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from webserver import seed_delivery, seed_prospect

from nurture import score
from nurture.core import clock
from nurture.score.rules import Labels
from nurture.store.models import Event, Prospect
from nurture.track import record_events
from nurture.track.vocabulary import NewEvent

START = datetime(2026, 5, 1, 0, 30, tzinfo=UTC)
BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Trident/7.0; Microsoft Outlook 16.0.5)",
]
GOOGLE = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"


def population(rng: random.Random, n: int, interested: int) -> list[dict]:
    people = []
    for i in range(n):
        people.append(
            {
                "email": f"sim{i}@co{i}.example.jp",
                "interest": i < interested,
                "apple": rng.random() < 0.4,
                "gmail": rng.random() < 0.3,
                "scanner": rng.random() < 0.3,
            }
        )
    rng.shuffle(people)
    return people


def hits(rng: random.Random, person: dict, did: int, sent: datetime) -> list[NewEvent]:
    """The tracking hits one mail gets."""
    out = []
    links = [f"https://example.jp/article/{k}" for k in range(4)]
    if person["apple"]:  # Apple MPP fetches the pixel within seconds, from Apple's network
        out.append(
            NewEvent(
                "opened",
                sent + timedelta(seconds=rng.uniform(1, 4)),
                "pixel",
                delivery_id=did,
                user_agent="Mozilla/5.0",
                ip=f"17.{rng.randint(0, 255)}.1.2",
            )
        )
    if person["gmail"]:  # Google's proxy fetches it on arrival
        out.append(
            NewEvent(
                "opened",
                sent + timedelta(seconds=rng.uniform(1, 4)),
                "pixel",
                delivery_id=did,
                user_agent=GOOGLE,
                ip="66.249.84.1",
            )
        )
    if person["scanner"]:  # a gateway follows every link within a second of arrival
        t = sent + timedelta(seconds=rng.uniform(2, 30))
        for k, link in enumerate(links):
            out.append(
                NewEvent(
                    "clicked",
                    t + timedelta(milliseconds=150 * k),
                    "link",
                    delivery_id=did,
                    url=link,
                    user_agent=BROWSERS[0],
                    ip="52.100.3.4",
                )
            )
    p_open, p_click = (0.75, 0.45) if person["interest"] else (0.2, 0.03)
    if rng.random() < p_open:  # a person, hours or days later
        t = sent + timedelta(hours=rng.uniform(2, 96))
        ua = rng.choice(BROWSERS)
        out.append(NewEvent("opened", t, "pixel", delivery_id=did, user_agent=ua, ip="203.0.113.7"))
        if rng.random() < p_click:
            out.append(
                NewEvent(
                    "clicked",
                    t + timedelta(minutes=rng.uniform(1, 20)),
                    "link",
                    delivery_id=did,
                    url=rng.choice(links),
                    user_agent=ua,
                    ip="203.0.113.7",
                )
            )
    return out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_top_of_the_ranking_is_the_interested_people(engine):
    score.configure()
    rng = random.Random(20261202)
    people = population(rng, 40, 6)
    with clock.frozen(START):
        for p in people:
            p["id"] = seed_prospect(engine, p["email"], company="", industry="", rank="C", temperature="cold")
    timeline = []
    for month in range(6):
        sent = START + timedelta(days=30 * month)
        for p in people:
            with clock.frozen(sent):
                did = seed_delivery(engine, p["id"], item_key=f"2026-{month + 5:02d}", sent_at=sent)
            timeline += [(e.occurred_at, e) for e in hits(rng, p, did, sent)]
        # a few interested people attend the seminar of the month
        for p in people:
            if p["interest"] and rng.random() < 0.25:
                timeline.append(
                    (
                        sent + timedelta(days=10),
                        NewEvent("seminar_attended", sent + timedelta(days=10), "import", prospect_id=p["id"]),
                    )
                )
    timeline.sort(key=lambda pair: pair[0])
    # Recorded as the tracking server would: in small batches, a second after they happen.
    for start in range(0, len(timeline), 16):
        batch = [e for _, e in timeline[start : start + 16]]
        with clock.frozen(batch[-1].occurred_at + timedelta(seconds=1)):
            record_events(engine, batch)
    end = START + timedelta(days=180)
    with clock.frozen(end):
        score.recompute(engine, score.current_rules(), cause="decay")
    with engine.connect() as conn:
        rows = conn.execute(select(Prospect.id, Prospect.score, Prospect.rank).order_by(Prospect.score.desc())).all()
        machine = conn.execute(select(Event.id).where(Event.label == "machine")).all()
    interested = {p["id"] for p in people if p["interest"]}
    top = [r.id for r in rows[: len(interested)]]
    assert len(machine) > 200  # the proxies and scanners were busy
    assert len(set(top) & interested) >= len(interested) - 1
    assert all(r.rank == "C" for r in rows if r.id not in interested)
    # Counting every hit as a person (no labels) would put the scanned and the proxied at the top instead:
    naive = dataclasses.replace(score.current_rules(), labels=Labels(unknown=1.0, machine=1.0))
    with engine.connect() as conn:
        naive_scores = score.score_all(conn, naive, end)
    naive_top = sorted(naive_scores, key=lambda pid: -naive_scores[pid].total)[: len(interested)]
    assert len(set(naive_top) & interested) < len(interested) - 1
