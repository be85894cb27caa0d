"""MailViewer: the campaigns loaded once, rendered for /v without tracking (no database, no server)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from webserver import make_config

from nurture.compose import links as tracking
from nurture.plan.campaigns import load_campaigns
from nurture.web.viewer import MailViewer

REPO = Path(__file__).resolve().parents[2]
PROSPECT = {
    "name": "鈴木 一郎",
    "company": "鈴木<精機>",
    "email": "ichiro@example.co.jp",
    "industry": "製造業",
    "attributes": {},
}


def config():
    return make_config("sqlite://", "https://t.example.co.jp", root=REPO)


def test_renders_an_item_without_tracking_and_escapes_prospect_data():
    cfg = config()
    viewer = MailViewer.load(cfg)
    assert set(viewer.campaigns) == {"mfg-insights", "postal-quarterly", "saas-ops-digest"}
    urls = tracking.urls_for(cfg, 7, 3)
    html = viewer.render("mfg-insights", "labor-shortage", PROSPECT, urls)
    assert html is not None and "鈴木&lt;精機&gt;" in html and urls["unsubscribe"] in html
    assert "/o/" not in html and "/c/" not in html and "/h/" not in html  # no pixel, no tracked or honeypot link


def test_unknown_campaign_or_item_renders_nothing():
    viewer = MailViewer.load(config())
    urls = tracking.urls_for(config(), 7, 3)
    assert viewer.item("mfg-insights", "no-such-item") is None and viewer.item("no-such-campaign", "bcp") is None
    assert viewer.render("mfg-insights", "no-such-item", PROSPECT, urls) is None


def test_a_failing_template_renders_nothing(tmp_path):
    cfg = config()
    (campaign,) = load_campaigns(cfg, ["mfg-insights"])
    item = dataclasses.replace(campaign.items[0], subject="{{ prospect.no_such_field }}")
    broken = dataclasses.replace(campaign, content=dataclasses.replace(campaign.content, items=(item,)))
    viewer = MailViewer(cfg, [broken])
    assert viewer.render("mfg-insights", item.key, PROSPECT, tracking.urls_for(cfg, 7, 3)) is None


def test_a_name_two_campaigns_claim_is_shown_for_neither():
    cfg = config()
    (campaign,) = load_campaigns(cfg, ["mfg-insights"])
    viewer = MailViewer(cfg, [campaign, dataclasses.replace(campaign, path=Path("campaigns/copy.toml"))])
    assert viewer.campaigns == {}
