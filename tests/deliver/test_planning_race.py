"""The last planned batch is never left behind: while `nurture send` plans, its senders claim each batch as it is
committed; a sender whose claim found nothing just before the planner committed its last batch and said it was
done must look once more instead of ending the run (the mail would wait for the next run, and the report would
say nothing was sent). Seen in CI as an intermittent "sent 0" in tests/plan/test_explain.py."""

from __future__ import annotations

import threading

from send_workspace import add_prospects, deliveries, edit

from nurture import deliver
from nurture.core import config as configuration
from nurture.plan.campaigns import load_campaigns
from nurture.plan.planner import plan
from nurture.store import db


def test_a_batch_committed_as_planning_ends_is_still_sent(ws, smtp_server):
    edit(ws / "nurture.toml", "concurrency = 2", "concurrency = 1")  # one sender: nobody else would rescue it
    add_prospects(ws, ["late@example.com,Late,Co,製造業,warm,opt_in"])
    cfg = configuration.load(ws / "nurture.toml")
    engine = db.engine_for(cfg.database_url)
    campaigns = load_campaigns(cfg)
    planning = threading.Event()

    class LastBatchLands(deliver.Deliverer):
        def claim(self, conn, worker, n):
            ids = super().claim(conn, worker, n)
            if not ids and not planning.is_set():
                # Right after this claim looked: the planner commits its (last) batch and says it is done.
                plan(engine, cfg, campaigns, deliver.Report())
                planning.set()
            return ids

    report = deliver.Report()
    LastBatchLands(engine, cfg, {c.name: c for c in campaigns}, report, planning=planning).run()
    assert report.sent == 1
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == ["late@example.com"]
    assert [d.state for d in deliveries(ws)] == ["sent"]
