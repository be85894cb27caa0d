"""The postal channel end to end through the CLI, on both databases: import addresses, print a batch (labels PDF,
vendor CSV, the issue PDF), mark it mailed (a touch that holds e-mail back), record returns (no more post)."""

from __future__ import annotations

import csv
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.cli.main import main
from nurture.people.addresses import parse_postal_code, split_prefecture
from nurture.people.cells import RowError
from nurture.postal.labels import Address, label_lines
from nurture.store import db
from nurture.store.models import Event, Prospect

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # Tuesday 10:00 in Tokyo
# ruff: noqa: E501 - the list is a spreadsheet export, one person per line
LIST = """メールアドレス,氏名,会社名,部署名,役職,業種,郵便番号,住所,建物名,同意区分
taro@yamada.example.jp,山田 太郎,株式会社山田製作所,製造部,部長,製造業,１００－０００５,東京都千代田区丸の内2-3-4,丸の内ビル5F,business_card
soumu@kawasaki.example.jp,,川崎精機株式会社,総務部,,製造業,2100007,神奈川県川崎市川崎区駅前本町11-2,,business_card
info@nagoya.example.jp,,名古屋機械株式会社,,,製造業,460-0008,愛知県名古屋市中区栄3-1-1,,business_card
ichiro@osaka.example.jp,鈴木 一郎,大阪金属工業株式会社,,代表取締役,製造業,〒530-0001,大阪府大阪市北区梅田1-1-1,,business_card
noaddr@example.jp,佐藤 花子,佐藤工業,,,製造業,,,,business_card
"""


# ----------------------------------------------------------------------------------------------- pure rules


def test_postal_codes_are_normalised_or_refused():
    assert parse_postal_code("１００－０００５") == "100-0005"
    assert parse_postal_code("〒1000005") == "100-0005"
    assert parse_postal_code(" 100ー0005 ") == "100-0005"
    assert parse_postal_code("SW1A 1AA") == "SW1A 1AA"  # abroad: kept as written
    for bad in ("100-005", "12345", "1000-0005-1"):
        with pytest.raises(RowError):
            parse_postal_code(bad)


def test_a_single_address_column_is_split_at_the_prefecture():
    assert split_prefecture("神奈川県川崎市川崎区駅前本町11-2") == ("神奈川県", "川崎市川崎区駅前本町11-2")
    assert split_prefecture("京都府京都市下京区") == ("京都府", "京都市下京区")
    assert split_prefecture("千代田区丸の内") == ("", "千代田区丸の内")


def test_honorifics_sama_for_a_person_onchu_for_an_organisation():
    base = {"postal_code": "100-0005", "prefecture": "東京都", "address_line": "千代田区丸の内2-3-4"}
    person = label_lines(
        Address(**base, company="株式会社山田製作所", department="製造部", title="部長", name="山田 太郎")
    )
    assert person[-3:] == ["株式会社山田製作所", "製造部", "部長 山田 太郎 様"] and "御中" not in "".join(person)
    dept = label_lines(Address(**base, company="川崎精機株式会社", department="総務部"))
    assert dept[-2:] == ["川崎精機株式会社", "総務部 御中"] and "様" not in "".join(dept)
    company = label_lines(Address(**base, company="名古屋機械株式会社"))
    assert company[-1] == "名古屋機械株式会社 御中"
    abroad = label_lines(Address("SW1A 1AA", "London", "10 Downing Street", name="Jane Doe", company="ACME Ltd"))
    assert abroad[0] == "Jane Doe" and abroad[-1] == "London SW1A 1AA" and "様" not in "".join(abroad)


# ----------------------------------------------------------------------------------------------- end to end


@pytest.fixture
def postal_ws(workspace, runner, monkeypatch):
    monkeypatch.setenv("NURTURE_NOW", NOW.isoformat())
    shutil.copytree(REPO / "campaigns", workspace / "campaigns")
    shutil.copytree(REPO / "templates", workspace / "templates")
    with (workspace / "nurture.toml").open("a", encoding="utf-8") as fh:
        fh.write(
            '\n[identity]\norganization = "株式会社ナーチャー工業"\nfrom_address = "news@nurture-kogyo.example.jp"\n'
            'postal_address = "〒530-0001 大阪府大阪市北区梅田1-1-1"\ninquiry = "info@nurture-kogyo.example.jp"\n'
            '\n[postal]\ncsv_encoding = "cp932"\n'
        )
    (workspace / "list.csv").write_text(LIST, encoding="utf-8")
    for args in (["init"], ["prospects", "import", "list.csv"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
    return workspace


def run(runner, *args):
    result = runner.invoke(main, list(args))
    return result


@pytest.mark.skipif(
    not (shutil.which("pdftotext") and shutil.which("pdftoppm")), reason="needs poppler-utils (pdftotext, pdftoppm)"
)
def test_a_quarter_of_postal_work(postal_ws, runner, tmp_path, monkeypatch):
    dry = run(runner, "postal", "run", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    (plan,) = __import__("json").loads(dry.output)
    assert plan["recipients"] == 4 and plan["reasons"] == {"address incomplete: no 郵便番号, 都道府県, 住所": 1}
    assert not (postal_ws / "print").exists()

    printed = run(runner, "postal", "run", "--out", "print")
    assert printed.exit_code == 0, printed.output
    folder = postal_ws / "print" / "batch-1"
    assert sorted(p.name for p in folder.iterdir()) == ["issue-2026-winter.pdf", "labels.pdf", "recipients.csv"]

    # The labels, as text in reading order: every address and the right honorific, in prospect order.
    text = subprocess.run(["pdftotext", str(folder / "labels.pdf"), "-"], capture_output=True, text=True).stdout
    expected = [
        "〒100-0005", "東京都千代田区丸の内2-3-4", "丸の内ビル5F", "株式会社山田製作所", "製造部", "部長 山田 太郎 様",
        "〒210-0007", "神奈川県川崎市川崎区駅前本町11-2", "川崎精機株式会社", "総務部 御中",
        "〒460-0008", "愛知県名古屋市中区栄3-1-1", "名古屋機械株式会社 御中",
        "〒530-0001", "大阪府大阪市北区梅田1-1-1", "大阪金属工業株式会社", "代表取締役 鈴木 一郎 様",
    ]  # fmt: skip
    positions = [text.find(line) for line in expected]
    assert -1 not in positions, [line for line, at in zip(expected, positions, strict=True) if at < 0]
    assert "佐藤" not in text
    fonts = subprocess.run(["pdffonts", str(folder / "labels.pdf")], capture_output=True, text=True).stdout
    assert "CJK" in fonts and " yes yes " in fonts  # a Japanese font, embedded as a subset
    png = tmp_path / "labels"
    subprocess.run(["pdftoppm", "-r", "40", "-png", "-f", "1", "-l", "1", str(folder / "labels.pdf"), str(png)])
    assert (tmp_path / "labels-1.png").stat().st_size > 1000
    issue = subprocess.run(["pdftotext", str(folder / "issue-2026-winter.pdf"), "-"], capture_output=True, text=True)
    assert "季刊 製造業インサイト" in issue.stdout and "株式会社ナーチャー工業" in issue.stdout

    with (folder / "recipients.csv").open(encoding="cp932", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["管理番号"], r["郵便番号"], r["敬称"]) for r in rows] == [
        ("P1-0001", "100-0005", "様"),
        ("P1-0002", "210-0007", "御中"),
        ("P1-0003", "460-0008", "御中"),
        ("P1-0004", "530-0001", "様"),
    ]
    # Printed but not mailed: nobody is chosen twice.
    again = run(runner, "postal", "run", "--dry-run")
    assert "would print 0" in again.output and "not yet marked mailed" in again.output

    # Mailed: a touch that holds e-mail back for [cadence] min_gap_days (an e-mail due this week waits).
    mailed = run(runner, "postal", "mailed", "1", "--date", "2026-11-30")
    assert mailed.exit_code == 0 and "4 recipient(s)" in mailed.output
    assert run(runner, "postal", "mailed", "1", "--date", "2026-11-30").exit_code == 0  # idempotent
    send = run(runner, "send", "--dry-run", "--json")
    decisions = __import__("json").loads(send.output)
    deferred = {d["email"]: d["reason"] for d in decisions["decisions"] if d["outcome"] == "deferred"}
    assert "cadence gap: mailed by postal-quarterly on 2026-11-30" in deferred["taro@yamada.example.jp"]

    # Returned mail: recorded through the one door; the next run leaves that address out.
    (postal_ws / "returned.csv").write_text("管理番号\nP1-0002\nP7-0001\n", encoding="utf-8")
    returned = run(runner, "postal", "returned", "returned.csv")
    assert returned.exit_code == 1 and "row 3: 'P7-0001' matches no printed label" in returned.output
    engine = db.engine_for(__import__("nurture.core.config", fromlist=["load"]).load(None).database_url)
    with engine.connect() as conn:
        types = [r.type for r in conn.execute(select(Event.type).order_by(Event.id))]
        status = dict(conn.execute(select(Prospect.email, Prospect.postal_status)).all())
    assert types.count("postal_mailed") == 4 and types.count("postal_returned") == 1
    assert status["soumu@kawasaki.example.jp"] == "returned"
    with (postal_ws / "campaigns" / "postal-quarterly.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[[content.items]]\nkey = "2027-spring"\nsubject = "春号"\ntemplate = "postal/2026-winter.mjml"\n')
    monkeypatch.setenv("NURTURE_NOW", (NOW + timedelta(days=120)).isoformat())
    later = run(runner, "postal", "run", "--dry-run", "--json", "--out", "print")
    plan = __import__("json").loads(later.output)[0]
    due = {d["email"] for d in plan["due"]}
    assert "soumu@kawasaki.example.jp" not in due and len(due) == 3
    assert {d["item"] for d in plan["due"]} == {"2027-spring"}
    batches = __import__("json").loads(run(runner, "postal", "batches", "--json").output)
    assert batches[0]["returned"] == 1 and batches[0]["mailed_on"] == "2026-11-30"

    # The corrected address comes with the next import: post is worth trying again.
    (postal_ws / "moved.csv").write_text(
        "メールアドレス,郵便番号,住所\nsoumu@kawasaki.example.jp,210-0001,神奈川県川崎市川崎区本町1-1\n",
        encoding="utf-8",
    )
    assert run(runner, "prospects", "import", "moved.csv").exit_code == 0
    with engine.connect() as conn:
        assert (
            conn.execute(
                select(Prospect.postal_status).where(Prospect.email == "soumu@kawasaki.example.jp")
            ).scalar_one()
            == ""
        )


def test_an_email_unsubscribe_stops_post_unless_configured(postal_ws, runner):
    engine = db.engine_for(__import__("nurture.core.config", fromlist=["load"]).load(None).database_url)
    with engine.begin() as conn:
        conn.execute(
            Prospect.__table__.update()
            .where(Prospect.email == "taro@yamada.example.jp")
            .values(status="unsubscribed", status_reason="unsubscribed (web)")
        )
    plan = __import__("json").loads(run(runner, "postal", "run", "--dry-run", "--json").output)[0]
    assert "unsubscribed from e-mail ([postal] email_optout_stops_post)" in plan["reasons"]
    with (postal_ws / "nurture.toml").open("a", encoding="utf-8") as fh:
        fh.write("email_optout_stops_post = false\n")
    plan = __import__("json").loads(run(runner, "postal", "run", "--dry-run", "--json").output)[0]
    assert plan["recipients"] == 4


def test_postal_campaigns_are_not_emailed_and_errors_are_clear(postal_ws, runner):
    send = run(runner, "send", "--dry-run")
    assert "postal-quarterly" not in send.output
    wrong = run(runner, "postal", "run", "mfg-insights")
    assert wrong.exit_code != 0 and "not a postal campaign: mfg-insights" in wrong.output
    missing = run(runner, "postal", "mailed", "99")
    assert missing.exit_code != 0 and "no postal batch 99" in missing.output


def test_stop_post_for_one_person_and_undo(postal_ws, runner):
    stopped = run(runner, "postal", "stop", "taro@yamada.example.jp", "nobody@example.jp")
    assert stopped.exit_code == 1 and "no more post to taro@yamada.example.jp" in stopped.output
    assert "nobody@example.jp: no such prospect" in stopped.output
    plan = __import__("json").loads(run(runner, "postal", "run", "--dry-run", "--json").output)[0]
    assert plan["reasons"]["asked for no post"] == 1 and plan["recipients"] == 3
    assert run(runner, "postal", "stop", "--undo", "taro@yamada.example.jp").exit_code == 0
    plan = __import__("json").loads(run(runner, "postal", "run", "--dry-run", "--json").output)[0]
    assert plan["recipients"] == 4


def test_mailed_refuses_a_future_date_and_a_second_different_date(postal_ws, runner, tmp_path):
    assert run(runner, "postal", "run", "--out", str(tmp_path / "print")).exit_code == 0
    future = run(runner, "postal", "mailed", "1", "--date", "2031-01-01")
    assert future.exit_code != 0 and "error:" in future.output and "2031-01-01" in future.output
    assert "Traceback" not in future.output
    assert run(runner, "postal", "mailed", "1", "--date", "2026-12-01").exit_code == 0
    assert run(runner, "postal", "mailed", "1", "--date", "2026-12-01").exit_code == 0  # the same day: idempotent
    other = run(runner, "postal", "mailed", "1", "--date", "2026-11-20")
    assert other.exit_code != 0 and "already marked mailed on 2026-12-01" in other.output
    listing = __import__("json").loads(run(runner, "postal", "batches", "--json").output)
    assert listing[0]["mailed_on"] == "2026-12-01"  # what the deliveries and events say, too


def test_returned_mail_says_how_to_clear_it_and_a_corrected_import_does(postal_ws, runner, tmp_path):
    assert run(runner, "postal", "run", "--out", str(tmp_path / "print")).exit_code == 0
    assert run(runner, "postal", "mailed", "1").exit_code == 0
    (postal_ws / "ret.csv").write_text("メールアドレス\ntaro@yamada.example.jp\n", encoding="utf-8")
    assert run(runner, "postal", "returned", "ret.csv").exit_code == 0
    dry = run(runner, "postal", "run", "--dry-run")
    assert "import the corrected address" in dry.output  # not "then clear it", which no command does
    (postal_ws / "moved.csv").write_text(
        "メールアドレス,郵便番号,住所\ntaro@yamada.example.jp,105-0001,東京都港区虎ノ門1-1-1\n", encoding="utf-8"
    )
    assert run(runner, "prospects", "import", "moved.csv").exit_code == 0
    assert "import the corrected address" not in run(runner, "postal", "run", "--dry-run").output


def test_an_english_reader_is_not_sent_the_japanese_issue(postal_ws, runner):
    engine = db.engine_for(__import__("nurture.core.config", fromlist=["load"]).load(None).database_url)
    with engine.begin() as conn:
        conn.execute(
            Prospect.__table__.update().where(Prospect.email == "taro@yamada.example.jp").values(language="en")
        )
    plan = __import__("json").loads(run(runner, "postal", "run", "--dry-run", "--json").output)[0]
    assert "taro@yamada.example.jp" not in {d["email"] for d in plan["due"]} and plan["recipients"] == 3
