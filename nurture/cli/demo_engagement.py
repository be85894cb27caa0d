"""The end of ``nurture demo``: four weeks of engagement with the demo's mails, through the real tracking server.

The tracking app (:func:`nurture.web.app.create_app`) runs in this process behind Starlette's test client, so
every hit goes through the same code as on a live server (signed tokens, the pixel, click redirects, the bot
labels, the event buffer, ``record_events`` and its listeners, i.e. scoring once it is there). The clock is moved
to each hit's moment, so the weeks pass in a second. Four kinds of reader, by the order of the mails:

==========  ==================================================================================================
engaged     opens on day 1, 6 and 13 in a mail program, clicks one link on day 1 (human); attends the seminar
protected   the company's mail gateway opens at once and clicks every link within a second (machine: security
            gateway, click burst); the person opens the mail on day 3 (human)
prefetched  Apple-Mail-style prefetch: a HEAD and a bare ``Mozilla/5.0`` fetch on arrival (machine), nothing more
silent      nothing at all
==========  ==================================================================================================

A seminar list (``seminar.csv``) is imported as offline events, and one prospect is recorded as won.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select

from nurture.compose.links import Links
from nurture.core import clock
from nurture.core.config import Config
from nurture.store.models import Delivery, Event, Prospect
from nurture.web.app import create_app

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)"
GATEWAY = "Mozilla/5.0 (compatible; Proofpoint URL Defense)"
WEEKS = 4


def _links(item: str) -> list[str]:
    return [f"https://example.co.jp/articles/{item}", f"https://example.co.jp/articles/{item}/data.pdf"]


def already_simulated(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.scalar(select(func.count()).select_from(Event).where(Event.type.in_(("opened", "clicked")))))


def simulate(engine: Engine, config: Config, folder: Path, say: Callable[[str], None]) -> datetime:
    """Play the four weeks after the demo's send; returns the instant the simulation ends at (the reports' now)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Delivery.id, Delivery.prospect_id, Delivery.sent_at, Delivery.item_key, Prospect.email)
            .join(Prospect, Prospect.id == Delivery.prospect_id)
            .where(Delivery.state == "sent")
            .order_by(Delivery.id)
        ).all()
    start = max((r.sent_at for r in rows), default=clock.now())
    # the reports' default period is the 4 weeks before "now": end just inside them, so that they hold the send
    end = min((r.sent_at for r in rows), default=start) + timedelta(weeks=WEEKS) - timedelta(minutes=1)
    links = Links(config)
    # (delivery row, seconds after sending, method, path, user agent)
    hits: list[tuple[float, str, str, str]] = []
    engaged: list[str] = []
    for n, r in enumerate(rows):
        pixel = links.url("open", r.id, suffix=".gif").removeprefix(links.base)
        clicks = [links.click(r.id, i, url).removeprefix(links.base) for i, url in enumerate(_links(r.item_key))]
        kind = n % 4
        if kind == 0:
            engaged.append(r.email)
            base = (r.sent_at - start).total_seconds()
            for day in (1, 6, 13):
                hits.append((base + day * 86400 + 3600, "GET", pixel, OUTLOOK))
            hits.append((base + 86400 + 3700, "GET", clicks[0], BROWSER))
        elif kind == 1:
            base = (r.sent_at - start).total_seconds()
            hits.append((base + 1, "GET", pixel, GATEWAY))
            hits.extend((base + 2 + i * 0.1, "GET", c, GATEWAY) for i, c in enumerate(clicks))
            hits.append((base + 3 * 86400 + 7200, "GET", pixel, OUTLOOK))
        elif kind == 2:
            base = (r.sent_at - start).total_seconds()
            hits.append((base + 1, "HEAD", pixel, "Mozilla/5.0"))
            hits.append((base + 1.5, "GET", pixel, "Mozilla/5.0"))
    hits.sort()
    with warnings.catch_warnings():  # starlette asks for httpx2 in a warning; httpx (a dependency) works
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient  # here, not at the top: only the demo needs it
    app = create_app(config, engine=engine, flush_interval=0.01, jobs=[])
    try:
        with TestClient(app, base_url=links.base, follow_redirects=False) as client:
            for offset, method, path, agent in hits:
                clock.set_now(start + timedelta(seconds=offset))
                client.request(method, path, headers={"user-agent": agent})
            clock.set_now(end)
    except BaseException:
        clock.set_now(None)
        raise
    opens = sum(1 for h in hits if "/o/" in h[2])
    say(f"  {len(hits)} tracking hits over {WEEKS} weeks: {opens} opens and {len(hits) - opens} clicks")
    zone = ZoneInfo(config.cadence.time_zone)
    seminar_day = (start + timedelta(days=10)).astimezone(zone).date()
    lines = ["メールアドレス,種別,日付,セミナー名"] + [
        f"{email},セミナー参加,{seminar_day:%Y/%m/%d} 15:00,製造業DXセミナー" for email in engaged[:2]
    ]
    (folder / "seminar.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return end.astimezone(UTC)
