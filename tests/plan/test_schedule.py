"""Does the declared [schedule] reach every send window? (nurture.plan.schedule), pure and on both databases."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from nurture.core.config import Config, ScheduleConfig
from nurture.plan import schedule
from nurture.plan.cadence import Cadence

NOW = datetime(2027, 1, 5, 1, tzinfo=UTC)  # Tuesday 10:00 in Tokyo
NEW_YORK = Cadence(send_hours=(9, 16), time_zone="America/New_York")
TOKYO = Cadence(send_hours=(9, 18))


def config(cron: str, zone: str = "") -> Config:
    return replace(Config(), schedule=ScheduleConfig(cron=cron, time_zone=zone))


def test_the_readme_schedule_reaches_every_zone():
    runs = schedule.runs_in_week(config("*/15 * * * *"), NOW)
    assert len(runs) == 7 * 24 * 4
    for zone in ("Asia/Tokyo", "America/New_York", "Europe/Berlin", "Pacific/Auckland", "America/Los_Angeles"):
        assert schedule.reaches(NEW_YORK, zone, runs)
        assert schedule.reaches(Cadence(send_hours=(14, 15)), zone, runs)


def test_tokyo_office_hours_never_reach_new_york():
    runs = schedule.runs_in_week(config("*/15 9-18 * * 1-5", "Asia/Tokyo"), NOW)
    assert schedule.reaches(TOKYO, "Asia/Tokyo", runs)
    assert not schedule.reaches(NEW_YORK, "America/New_York", runs)
    # 9-18 JST is 19-04 EST: a New York window of 20-23 is reached on the previous local day
    assert schedule.reaches(Cadence(send_hours=(20, 23)), "America/New_York", runs)


def test_the_schedule_zone_defaults_to_the_workspace_zone():
    c = config("0 10 * * *")
    assert c.schedule_time_zone == "Asia/Tokyo"
    assert {r.astimezone(UTC).hour for r in schedule.runs_in_week(c, NOW)} == {1}


def test_a_bad_cron_expression_is_a_config_error_that_says_how():
    with pytest.raises(ValueError, match=r'schedule\.cron "every day" is not a cron expression'):
        ScheduleConfig(cron="every day")


@pytest.mark.parametrize(
    ("email", "country"),
    [("a@b.co.jp", "JP"), ("a@b.de", "DE"), ("a@b.co.uk", "GB"), ("a@b.com", None), ("a@b.org", None), ("a@b", None)],
)
def test_country_of_an_address(email, country):
    assert schedule.country_of(email) == country


def test_hours_apart():
    assert schedule.hours_apart("JP", "America/New_York", NOW) == 14
    assert schedule.hours_apart("JP", "Asia/Tokyo", NOW) == 0
    assert schedule.hours_apart("US", "America/Chicago", NOW) == 0


def test_config_only_warnings_name_the_campaign_zone_and_schedule(tmp_path):
    from nurture.plan.campaigns import load_campaign

    (tmp_path / "campaigns").mkdir()
    path = tmp_path / "campaigns" / "ops.toml"
    path.write_text(
        'name = "ops"\nlanguage = "en"\n[cadence]\nsend_hours = [9, 16]\ntime_zone = "America/New_York"\n'
        '[content]\n[[content.items]]\nkey = "k"\nsubject = "s"\ntemplate = "t.mjml"\n',
        encoding="utf-8",
    )
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.mjml").write_text("<mjml></mjml>", encoding="utf-8")
    c = replace(config("*/15 9-18 * * 1-5"), root=tmp_path)
    found = schedule.config_window_warnings(c, [load_campaign(path, c)], NOW)
    assert [(w.campaign, w.zone) for w in found] == [("ops", "America/New_York")]
    assert '"*/15 9-18 * * 1-5"' in found[0].message and "every 15 minutes" in found[0].message
