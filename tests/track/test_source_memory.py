"""Bot labels that remember (``caught_source``): a source caught as a machine makes its other hits for the same
recipient machine too, whichever batch, worker or order they arrive in; listeners hear of every relabel."""

from __future__ import annotations

import itertools
import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from webserver import seed_delivery, seed_prospect

from nurture import track
from nurture.store.models import Event
from nurture.track import NewEvent, botdetect, record_event, record_events

NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
SENT = NOW - timedelta(hours=1)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
SAFARI = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15"
SCANNER_IP = "35.190.1.1"


def hit(kind, at, did, *, ip=SCANNER_IP, agent=CHROME, honeypot=False, url="https://a.example/", **extra):
    data = {"honeypot": True} if honeypot else {}
    source = "pixel" if kind == "open" else "link"
    return NewEvent(
        track.OPENED if kind == "open" else track.CLICKED,
        at,
        source,
        delivery_id=did,
        user_agent=agent,
        ip=ip,
        url="" if kind == "open" or honeypot else url,
        data=data,
        **extra,
    )


def labels(engine):
    with engine.connect() as conn:
        rows = conn.execute(select(Event.id, Event.label, Event.rule, Event.relabeled_at).order_by(Event.id)).all()
    return rows


@pytest.fixture
def mail(engine):
    pid = seed_prospect(engine)
    return pid, seed_delivery(engine, pid, sent_at=SENT)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=lambda o: "-".join(map(str, o)))
def test_the_issue_sequence_in_every_order_and_batch(engine, mail, order):
    """Honeypot, pixel 0.5 s later, a link 0.5 s after that (the issue's reproduction), each in its own batch and
    stored in every order: all three end machine."""
    _, did = mail
    hits = [
        hit("click", NOW, did, honeypot=True),
        hit("open", NOW + timedelta(seconds=0.5), did),
        hit("click", NOW + timedelta(seconds=1), did),
    ]
    for i in order:
        record_event(engine, hits[i])
    rows = labels(engine)
    assert [r.label for r in rows] == ["machine"] * 3
    assert {r.rule for r in rows} <= {"honeypot", "honeypot_clicker", "caught_source"}


def test_neighbouring_address_same_agent_is_the_same_source(engine, mail):
    _, did = mail
    record_event(engine, hit("click", NOW, did, honeypot=True, ip="35.190.1.1"))
    record_event(engine, hit("open", NOW + timedelta(seconds=2), did, ip="35.190.1.77"))
    (_, later) = labels(engine)
    assert (later.label, later.rule) == ("machine", "caught_source") and later.relabeled_at is not None


def test_a_person_elsewhere_or_with_another_agent_stays_human(engine, mail):
    _, did = mail
    record_event(engine, hit("click", NOW, did, honeypot=True))
    record_event(engine, hit("open", NOW + timedelta(seconds=30), did, ip="198.51.100.20"))  # same agent, elsewhere
    record_event(engine, hit("open", NOW + timedelta(seconds=40), did, agent=SAFARI))  # same network, other agent
    assert [(r.label, r.rule) for r in labels(engine)[1:]] == [("human", "browser"), ("human", "browser")]


def test_the_window_is_kept_on_both_sides(engine, mail):
    _, did = mail
    window = timedelta(seconds=botdetect.SOURCE_WINDOW_SECONDS)
    record_events(
        engine,
        [
            # a neighbouring address: the honeypot_clicker rule (same address, no window) does not apply
            hit("open", NOW - window - timedelta(seconds=1), did, ip="35.190.1.50"),  # before the window: human
            hit("open", NOW - window + timedelta(seconds=1), did, ip="35.190.1.50"),  # inside, before
            hit("open", NOW + window - timedelta(seconds=1), did, ip="35.190.1.50"),  # inside, after
            hit("open", NOW + window + timedelta(seconds=1), did, ip="35.190.1.50"),  # after the window: human
        ],
    )
    record_event(engine, hit("click", NOW, did, honeypot=True))
    assert [r.label for r in labels(engine)] == ["human", "machine", "machine", "human", "machine"]
    relabelled = labels(engine)[1:3]
    assert all(r.rule == "caught_source" and r.relabeled_at is not None for r in relabelled)


def test_the_window_is_configurable_and_zero_turns_it_off(engine, mail):
    _, did = mail
    try:
        track.set_source_window(timedelta(0))
        record_event(engine, hit("click", NOW, did, honeypot=True))
        record_event(engine, hit("open", NOW + timedelta(minutes=5), did, ip="35.190.1.9"))
        assert labels(engine)[1].label == "human"
        track.set_source_window(timedelta(minutes=1))
        record_event(engine, hit("open", NOW + timedelta(seconds=50), did, ip="35.190.1.9"))
        record_event(engine, hit("open", NOW + timedelta(seconds=70), did, ip="35.190.1.9"))
        assert [r.label for r in labels(engine)[2:]] == ["machine", "human"]
    finally:
        track.set_source_window(timedelta(seconds=botdetect.SOURCE_WINDOW_SECONDS))


def test_the_recipient_is_the_scope_not_only_the_mail(engine):
    pid = seed_prospect(engine)
    first = seed_delivery(engine, pid, sent_at=SENT, item_key="a")
    second = seed_delivery(engine, pid, sent_at=SENT, item_key="b")
    other = seed_delivery(engine, seed_prospect(engine, "hanako@example.co.jp"), sent_at=SENT)
    record_event(engine, hit("click", NOW, first, honeypot=True))
    record_event(engine, hit("open", NOW + timedelta(seconds=3), second))
    record_event(engine, hit("open", NOW + timedelta(seconds=3), other))  # another person: not this scope
    assert [r.label for r in labels(engine)] == ["machine", "machine", "human"]


@pytest.mark.parametrize(
    "catcher",
    [
        pytest.param(lambda did: hit("click", NOW, did, ip="40.107.22.5"), id="gateway_network"),
        pytest.param(lambda did: hit("open", NOW, did, agent="Mimecast-URL-Protect/1.0 " + CHROME), id="gateway-agent"),
        pytest.param(
            lambda did: NewEvent(
                track.OPENED,
                NOW,
                "sendgrid",
                delivery_id=did,
                user_agent=CHROME,
                ip=SCANNER_IP,
                data={"sg_machine_open": True},
                dedup_key="sg-1",
            ),
            id="sg_machine_open",
        ),
    ],
)
def test_other_catching_rules_and_out_of_order_arrival(engine, mail, catcher):
    """The later hit is stored first (out of order): the catcher relabels it when it arrives."""
    _, did = mail
    first = catcher(did)
    record_event(engine, hit("open", NOW + timedelta(seconds=20), did, ip=first.ip, agent=first.user_agent))
    record_event(engine, first)
    assert [r.label for r in labels(engine)] == ["machine", "machine"]


def test_weak_signs_do_not_convict_a_source(engine, mail):
    """A hit that is machine only by a weak sign (too soon after sending) labels itself, not its source: people
    may share it."""
    _, did = mail
    record_event(engine, hit("open", SENT + timedelta(seconds=2), did))
    record_event(engine, hit("open", SENT + timedelta(seconds=90), did))
    assert [(r.label, r.rule) for r in labels(engine)] == [("machine", "too_soon"), ("human", "browser")]


def test_listeners_hear_every_relabel_with_the_final_label(engine, mail):
    pid, did = mail
    seen = []
    track.add_listener(lambda conn, rows: seen.append(rows))
    listener = track.record._listeners[-1]
    try:
        record_event(engine, hit("open", NOW, did))
        record_events(engine, [hit("click", NOW + timedelta(seconds=1), did, honeypot=True), hit("open", NOW, did)])
    finally:
        track.remove_listener(listener)
    first, second = seen
    assert [(r["label"], r["prospect_id"]) for r in first] == [("human", pid)] and first[0]["id"]
    fresh, older = second[:2], second[2:]
    assert [r["label"] for r in fresh] == ["machine", "machine"] and not any(r.get("relabeled") for r in fresh)
    assert [(r["id"], r["label"], r["rule"], r["relabeled"]) for r in older] == [
        (first[0]["id"], "machine", "honeypot_clicker", True)
    ]


def test_two_workers_recording_at_the_same_moment_never_both_miss(engine, mail):
    """A scanner's honeypot hit and its pixel recorded by two workers at once, 15 times: each transaction either
    sees the other's row or is seen by it (per-recipient lock on PostgreSQL, one writer on SQLite). A slow listener
    keeps each transaction open after its rule has run, which is where two unserialised workers would miss."""
    _, did = mail
    track.add_listener(slow := lambda conn, rows: time.sleep(0.05))
    try:
        _race(engine, did)
    finally:
        track.remove_listener(slow)
    assert {r.label for r in labels(engine)} == {"machine"}


def _race(engine, did):
    for round_ in range(15):
        at = NOW + timedelta(hours=round_)
        barrier = threading.Barrier(2)
        errors = []

        def record(event, barrier=barrier, errors=errors):
            try:
                barrier.wait(5)
                record_event(engine, event)
            except Exception as exc:  # reported below: a thread's exception is otherwise lost
                errors.append(exc)

        threads = [
            threading.Thread(target=record, args=(hit("click", at, did, honeypot=True),)),
            threading.Thread(target=record, args=(hit("open", at + timedelta(seconds=1), did),)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert not errors


def test_simulated_population_no_scanner_hit_ends_human(engine):
    """Scanners on every mail (honeypot, every link, the pixel, seconds to minutes after delivery, from pools of
    neighbouring addresses posing as desktop Chrome), people reading hours later from their own networks; hits
    stored in random batches and a random order. No scanner hit is labelled human; people's hits stay human."""
    rng = random.Random(17)
    scanner_hits, people_hits = [], []
    for n in range(30):
        pid = seed_prospect(engine, f"p{n}@example.co.jp")
        did = seed_delivery(engine, pid, sent_at=SENT, item_key=f"i{n}")
        pool = f"34.{rng.randrange(64, 127)}.{rng.randrange(256)}"
        start = SENT + timedelta(seconds=rng.uniform(6, 120))
        offsets = sorted(rng.uniform(0, 300) for _ in range(4))
        ip = lambda pool=pool: f"{pool}.{rng.randrange(1, 255)}"  # noqa: E731 - a new address from the pool per hit
        scanner_hits += [
            hit("click", start + timedelta(seconds=offsets[0]), did, ip=ip(), honeypot=True),
            hit("open", start + timedelta(seconds=offsets[1]), did, ip=ip()),
            hit("click", start + timedelta(seconds=offsets[2]), did, ip=ip(), url="https://a.example/1"),
            hit("click", start + timedelta(seconds=offsets[3]), did, ip=ip(), url="https://a.example/2"),
        ]
        if rng.random() < 0.6:
            read = SENT + timedelta(hours=rng.uniform(2, 48))
            person = f"203.0.{rng.randrange(113, 114)}.{rng.randrange(1, 255)}"
            people_hits.append(hit("open", read, did, ip=person, agent=SAFARI))
            if rng.random() < 0.5:
                people_hits.append(hit("click", read + timedelta(minutes=2), did, ip=person, agent=SAFARI))
    everything = scanner_hits + people_hits
    rng.shuffle(everything)
    while everything:
        size = rng.randint(1, 7)
        record_events(engine, everything[:size])
        everything = everything[size:]
    with engine.connect() as conn:
        rows = conn.execute(select(Event.ip, Event.user_agent, Event.label)).all()
    scanners = [r for r in rows if r.user_agent == CHROME]
    people = [r for r in rows if r.user_agent == SAFARI]
    assert len(scanners) == len(scanner_hits) and len(people) == len(people_hits)
    assert [r for r in scanners if r.label == "human"] == []
    assert {r.label for r in people} == {"human"}


def test_the_catching_rules_and_their_index_agree():
    from nurture.store import models

    assert botdetect.CATCHING_RULES == models.CATCHING_RULES
