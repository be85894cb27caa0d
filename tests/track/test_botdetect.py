"""Human / machine labels of opens and clicks (nurture.track.botdetect): one test per rule, and precedence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nurture.track import botdetect
from nurture.track.botdetect import label_hit

SENT = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
LATER = SENT + timedelta(hours=3)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    "kwargs, label, rule",
    [
        ({"honeypot": True, "user_agent": CHROME}, "machine", "honeypot"),
        ({"machine_open": True, "user_agent": CHROME}, "machine", "sg_machine_open"),
        ({"method": "HEAD", "user_agent": CHROME}, "machine", "head_request"),
        ({"user_agent": "Mozilla/5.0 (compatible; Proofpoint URL Defense)"}, "machine", "security_gateway"),
        ({"user_agent": "Mimecast-URL-Protect/1.0"}, "machine", "security_gateway"),
        ({"user_agent": "Barracuda Sentinel (EE)"}, "machine", "security_gateway"),
        ({"user_agent": "Mozilla/5.0", "ip": "17.58.100.7"}, "machine", "apple_mpp"),
        ({"user_agent": "Mozilla/5.0", "ip": "203.0.113.9"}, "machine", "apple_mpp_agent"),
        ({"user_agent": CHROME, "ip": "17.1.2.3"}, "machine", "apple_network"),
        ({"user_agent": CHROME, "occurred_at": SENT + timedelta(seconds=2)}, "machine", "too_soon"),
        (
            {"user_agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"},
            "unknown",
            "gmail_image_proxy",
        ),
        ({"user_agent": "python-requests/2.32"}, "machine", "automation_agent"),
        ({"user_agent": "curl/8.5.0"}, "machine", "automation_agent"),
        ({"user_agent": ""}, "unknown", "no_user_agent"),
        ({"user_agent": CHROME, "ip": "198.51.100.20"}, "human", "browser"),
    ],
)
def test_single_event_rules(kwargs, label, rule):
    kwargs = {"occurred_at": LATER, "sent_at": SENT, **kwargs}
    verdict = label_hit("opened", **kwargs)
    assert (verdict.label, verdict.rule) == (label, rule)
    assert 0 <= verdict.confidence <= 1


def test_microsoft_eop_network_marks_clicks_not_opens():
    assert label_hit("clicked", user_agent=CHROME, ip="40.107.22.5").rule == "gateway_network"
    assert label_hit("opened", user_agent=CHROME, ip="40.107.22.5").rule == "browser"


def test_too_soon_needs_sent_at_and_a_small_gap():
    assert label_hit("clicked", user_agent=CHROME, occurred_at=LATER, sent_at=None).rule == "browser"
    edge = SENT + timedelta(seconds=botdetect.TOO_SOON_SECONDS)
    assert label_hit("clicked", user_agent=CHROME, occurred_at=edge, sent_at=SENT).rule == "browser"


def test_bad_ip_text_is_ignored():
    assert label_hit("opened", user_agent=CHROME, ip="not-an-ip").rule == "browser"


def test_burst_of_different_links_within_a_second():
    t = LATER
    clicks = [
        (1, 10, 0, t),
        (2, 10, 1, t + timedelta(milliseconds=300)),
        (3, 10, 2, t + timedelta(seconds=5)),
        (4, 11, 0, t),
        (5, 11, 0, t + timedelta(milliseconds=100)),  # same link twice: a double click
        (6, 12, 0, t),
        (7, 12, 1, t + timedelta(seconds=3)),
    ]
    assert botdetect.burst_clicks(clicks) == {1, 2}
