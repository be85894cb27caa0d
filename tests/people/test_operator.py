"""Operator commands on both databases: suppress, unsuppress, erase, suppressions import (plain list, Mailchimp's
cleaned export, SendGrid's spam reports), each with --dry-run and --json."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from nurture.cli.main import main
from nurture.core import clock, config
from nurture.people.queries import erased_address
from nurture.store import db
from nurture.store.models import (
    Delivery,
    Event,
    PostalBatch,
    PostalRecipient,
    Prospect,
    ProspectTag,
    Suppression,
    email_hash,
)

FIXTURES = Path(__file__).parent / "fixtures"
LIST = (
    "メールアドレス,氏名,会社名,同意,タグ,部署\n"
    "taro@example.co.jp,山田 太郎,株式会社山田製作所,名刺交換,展示会,生産技術部\n"
    "hanako@example.co.jp,鈴木 花子,鈴木精機株式会社,オプトイン,,品質保証部\n"
)


def cli(runner, *args):
    return runner.invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def ws(workspace, runner):
    assert cli(runner, "init").exit_code == 0
    (workspace / "list.csv").write_text(LIST, encoding="utf-8")
    assert cli(runner, "prospects", "import", "list.csv").exit_code == 0
    return workspace


@pytest.fixture
def eng(ws):
    return db.engine_for(config.load().database_url)


def row(engine, email):
    with engine.connect() as conn:
        return conn.execute(select(Prospect.__table__).where(Prospect.email == email)).mappings().first()


def suppressions(engine):
    with engine.connect() as conn:
        return {r.email_hash: (r.reason, r.source) for r in conn.execute(select(Suppression))}


def events(engine, **where):
    with engine.connect() as conn:
        stmt = select(Event.__table__)
        for k, v in where.items():
            stmt = stmt.where(getattr(Event, k) == v)
        return [dict(r) for r in conn.execute(stmt).mappings()]


def test_suppress_by_hand_goes_through_the_door_and_skips_bad_addresses(ws, eng, runner):
    dry = cli(runner, "suppress", "Taro@Example.co.jp", "--reason", "電話で依頼", "--dry-run", "--json")
    assert dry.exit_code == 0 and json.loads(dry.output)["suppressed"] == 1
    assert suppressions(eng) == {} and row(eng, "taro@example.co.jp")["status"] == "active"

    result = cli(
        runner, "suppress", "Taro@Example.co.jp", "stranger@example.org", "not-an-address", "--reason", "電話で依頼"
    )
    assert result.exit_code == 1  # one bad argument is reported ...
    assert '"not-an-address" is not a valid address' in result.output
    # ... and the others are still suppressed
    taro = row(eng, "taro@example.co.jp")
    assert taro["status"] == "unsubscribed"
    (event,) = events(eng, type="unsubscribed")
    assert event["prospect_id"] == taro["id"] and event["source"] == "operator"
    assert event["data"] == {"by": "operator", "reason": "電話で依頼"}
    assert suppressions(eng)[email_hash("taro@example.co.jp")][0] == "unsubscribed"
    assert suppressions(eng)[email_hash("stranger@example.org")] == ("unsubscribed", "operator: 電話で依頼")

    again = cli(runner, "suppress", "taro@example.co.jp", "--json")
    data = json.loads(again.output)
    assert data["already_suppressed"] == 1 and data["suppressed"] == 0
    assert len(events(eng, type="unsubscribed")) == 1  # no second event

    # a later import of the stranger brings them in unsubscribed, never active
    (ws / "more.csv").write_text("email,name\nstranger@example.org,S\n", encoding="utf-8")
    assert cli(runner, "prospects", "import", "more.csv").exit_code == 0
    assert row(eng, "stranger@example.org")["status"] == "unsubscribed"


def test_suppress_from_a_file_and_as_bounced(ws, eng, runner):
    (ws / "stop.txt").write_text("hanako@example.co.jp\nother@example.net\nhanako@@x\n", encoding="utf-8")
    result = cli(runner, "suppress", "--file", "stop.txt", "--kind", "bounced", "--reason", "returned mail")
    assert result.exit_code == 1 and 'stop.txt: row 3: "hanako@@x" is not a valid address' in result.output
    assert row(eng, "hanako@example.co.jp")["status"] == "bounced"
    (event,) = events(eng, type="bounced")
    assert event["data"]["bounce"] == "hard"
    assert len(suppressions(eng)) == 2


def test_unsuppress_records_the_new_consent(ws, eng, runner):
    assert cli(runner, "suppress", "taro@example.co.jp").exit_code == 0
    with clock.frozen(datetime(2026, 12, 1, 3, 0, tzinfo=UTC)):
        dry = cli(runner, "unsuppress", "taro@example.co.jp", "--consent", "opt_in", "--source", "x", "--dry-run")
        assert dry.exit_code == 0 and "dry run" in dry.output
        assert row(eng, "taro@example.co.jp")["status"] == "unsubscribed"
        result = cli(
            runner, "unsuppress", "TARO@example.co.jp", "--consent", "opt_in", "--source", "seminar 2026-12", "--json"
        )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["was_suppressed"] == "unsubscribed"
    taro = row(eng, "taro@example.co.jp")
    assert taro["status"] == "active" and taro["consent_basis"] == "opt_in"
    assert taro["consent_source"] == "seminar 2026-12"
    assert taro["consent_at"] == datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert email_hash("taro@example.co.jp") not in suppressions(eng)

    bad = cli(runner, "unsuppress", "nobody@example.org", "--consent", "opt_in", "--source", "x")
    assert bad.exit_code == 1 and bad.output.startswith("error: no prospect")
    unknown = cli(runner, "unsuppress", "taro@example.co.jp", "--consent", "unknown", "--source", "x")
    assert unknown.exit_code == 2  # click refuses the choice


def test_erase_keeps_only_the_hash_and_blocks_reimport(ws, eng, runner):
    taro = row(eng, "taro@example.co.jp")
    now = clock.now()
    with eng.begin() as conn:
        conn.execute(
            insert(Delivery).values(
                id=1,
                campaign="c",
                prospect_id=taro["id"],
                item_key="i",
                state="sent",
                subject="山田様へのご案内",
                error="550 taro@example.co.jp unknown",
                created_at=now,
                updated_at=now,
            )
        )
        conn.execute(
            insert(Event).values(
                type="clicked",
                prospect_id=taro["id"],
                delivery_id=1,
                occurred_at=now,
                recorded_at=now,
                url="https://example.com/page?utm_source=x&email=taro@example.co.jp#top",
                user_agent="Mozilla/5.0",
                ip="203.0.113.9",
                data={"raw": {"email": "taro@example.co.jp"}},
            )
        )
        conn.execute(  # a provider's event for the address before it was linked to the prospect
            insert(Event).values(
                type="bounced",
                prospect_id=None,
                occurred_at=now,
                recorded_at=now,
                ip="198.51.100.7",
                data={"raw": {"email": "taro@example.co.jp", "reason": "550"}},
            )
        )
    dry = cli(runner, "erase", "taro@example.co.jp", "--dry-run", "--json")
    assert json.loads(dry.output)["events_cleared"] == 1 and row(eng, "taro@example.co.jp") is not None
    assert json.loads(dry.output)["outcome"] == "would be erased"  # not "erased": nothing was

    result = cli(runner, "erase", "Taro@Example.co.jp")
    assert result.exit_code == 0, result.output
    assert row(eng, "taro@example.co.jp") is None
    gone = row(eng, erased_address("taro@example.co.jp"))
    assert gone["status"] == "erased" and gone["name"] == "" and gone["company"] == "" and gone["attributes"] == {}
    (event,) = events(eng, prospect_id=gone["id"])
    assert (event["ip"], event["user_agent"], event["data"]) == ("", "", {})
    assert event["url"] == "https://example.com/page"
    (unlinked,) = events(eng, type="bounced")
    assert (unlinked["ip"], unlinked["data"]) == ("", {})
    with eng.connect() as conn:
        delivery = conn.execute(select(Delivery.subject, Delivery.error)).one()
        tags = conn.execute(select(func.count()).select_from(ProspectTag).where(ProspectTag.prospect_id == gone["id"]))
        assert tuple(delivery) == ("", "") and tags.scalar_one() == 0
    assert suppressions(eng)[email_hash("taro@example.co.jp")][0] == "erased"
    show = cli(runner, "prospects", "show", "taro@example.co.jp")
    assert show.exit_code == 0 and "erased at the person's request" in show.output
    assert json.loads(cli(runner, "prospects", "show", "taro@example.co.jp", "--json").output)["erased"] is True

    reimport = cli(runner, "prospects", "import", "list.csv", "--json")
    assert json.loads(reimport.output)["suppressed_skipped"] == 1
    assert row(eng, "taro@example.co.jp") is None

    twice = cli(runner, "erase", "taro@example.co.jp", "--json")
    assert json.loads(twice.output)["outcome"] == "already erased"
    never = cli(runner, "erase", "never@example.org", "--json")
    assert json.loads(never.output)["outcome"].startswith("not a prospect")
    assert suppressions(eng)[email_hash("never@example.org")][0] == "erased"


def test_suppressions_import_mailchimp_sendgrid_and_plain_list(ws, eng, runner):
    for name in ("cleaned_members_export_1a2b.csv", "spam_reports.csv"):
        (ws / name).write_bytes((FIXTURES / name).read_bytes())
    dry = cli(runner, "suppressions", "import", "cleaned_members_export_1a2b.csv", "--dry-run", "--json")
    data = json.loads(dry.output)
    assert data["kind"] == "bounced" and data["detected_as"] == "Mailchimp cleaned contacts"
    assert data["suppressed"] == 2 and data["prospects_changed"] == 1 and suppressions(eng) == {}

    result = cli(runner, "suppressions", "import", "cleaned_members_export_1a2b.csv")
    assert result.exit_code == 0, result.output
    assert row(eng, "taro@example.co.jp")["status"] == "bounced"
    assert suppressions(eng)[email_hash("gone@old.example.com")][0] == "bounced"
    again = json.loads(cli(runner, "suppressions", "import", "cleaned_members_export_1a2b.csv", "--json").output)
    assert again["suppressed"] == 0 and again["already_suppressed"] == 2
    assert len(events(eng, type="bounced")) == 1

    spam = json.loads(cli(runner, "suppressions", "import", "spam_reports.csv", "--json").output)
    assert spam["kind"] == "complained" and spam["suppressed"] == 1

    (ws / "old.txt").write_text("hanako@example.co.jp\n\nbroken@\nx@example.net\n", encoding="utf-8")
    plain = cli(runner, "suppressions", "import", "old.txt", "--reason", "from the old tool")
    assert plain.exit_code == 0 and 'row 3: "broken@" is not a valid address' in plain.output
    assert row(eng, "hanako@example.co.jp")["status"] == "unsubscribed"
    (event,) = events(eng, type="unsubscribed")
    assert event["data"]["reason"] == "from the old tool"

    (ws / "subscribed_members_export.csv").write_text(
        "Email Address,OPTIN_TIME\nz@example.com,2024-01-01\n", encoding="utf-8"
    )
    refused = cli(runner, "suppressions", "import", "subscribed_members_export.csv")
    assert refused.exit_code == 1 and "subscribed contacts" in refused.output


def test_erase_clears_the_postal_address_and_the_printed_snapshots(ws, eng, runner):
    (ws / "post.csv").write_text(
        "メールアドレス,氏名,会社名,部署,郵便番号,都道府県,住所,建物名,郵送不要\n"
        "taro@example.co.jp,山田 太郎,株式会社山田製作所,生産技術部,〒105-0001,東京都,港区虎ノ門9-9-9,虎ノ門ビル5F,○\n",
        encoding="utf-8",
    )
    assert cli(runner, "prospects", "import", "post.csv").exit_code == 0
    taro = row(eng, "taro@example.co.jp")
    assert taro["postal_code"] == "105-0001" and taro["building"] == "虎ノ門ビル5F"
    now = clock.now()
    with eng.begin() as conn:
        conn.execute(insert(PostalBatch).values(id=1, campaign="postal", created_at=now))
        conn.execute(
            insert(PostalRecipient).values(
                batch_id=1,
                prospect_id=taro["id"],
                item_key="2026-q4",
                code="P1-0001",
                address={"name": "山田 太郎", "company": "株式会社山田製作所", "address_line": "港区虎ノ門9-9-9"},
            )
        )
    assert cli(runner, "erase", "taro@example.co.jp").exit_code == 0
    gone = row(eng, erased_address("taro@example.co.jp"))
    personal = ("postal_code", "prefecture", "address_line", "building", "department", "postal_status")
    assert {k: gone[k] for k in personal} == dict.fromkeys(personal, "")
    with eng.connect() as conn:
        (snapshot,) = conn.execute(select(PostalRecipient.address, PostalRecipient.code)).all()
    assert snapshot == ({}, "P1-0001")  # the batch still counts the label, but no longer says whose it was
    show = cli(runner, "prospects", "show", "taro@example.co.jp")
    assert "生産技術部" not in show.output and "虎ノ門" not in show.output


def test_unsuppress_of_someone_never_suppressed_says_so(ws, eng, runner):
    result = runner.invoke(
        main, ["unsuppress", "hanako@example.co.jp", "--consent", "opt_in", "--source", "x"], catch_exceptions=False
    )
    assert result.exit_code == 0
    assert "active again" not in result.output and "keeps being mailed" in result.output
    assert "warning: was not suppressed: only the consent was replaced" in result.output
    data = json.loads(
        cli(runner, "unsuppress", "hanako@example.co.jp", "--consent", "opt_in", "--source", "y", "--json").output
    )
    assert data["warning"].startswith("was not suppressed")
