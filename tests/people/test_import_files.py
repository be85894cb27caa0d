"""Import as people's files are: title rows above the header, every problem of a row at once, the business-card
services' exports (Sansan, Eight), and files that used to print a traceback."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import select

from nurture.cli.main import main
from nurture.core import config
from nurture.store import db
from nurture.store.models import Prospect, Suppression, email_hash

FIXTURES = Path(__file__).parent / "fixtures"


def cli(runner, *args):
    return runner.invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def ws(workspace, runner):
    assert cli(runner, "init").exit_code == 0
    return workspace


@pytest.fixture
def eng(ws):
    return db.engine_for(config.load().database_url)


def prospect(engine, email):
    with engine.connect() as conn:
        return conn.execute(select(Prospect.__table__).where(Prospect.email == email)).mappings().first()


def test_xlsx_with_title_rows_above_the_header(ws, eng, runner):
    wb = openpyxl.Workbook()
    sheet = wb.active
    sheet.append(["顧客リスト（2026年11月）"])
    sheet.append(["作成: 営業部", None, "社外秘"])
    sheet.append([])
    sheet.append(["No.", "氏名", "メールアドレス", "会社名"])
    sheet.append([1, "山田 太郎", "taro@example.co.jp", "山田製作所"])
    sheet.append([2, "鈴木 花子", "bad address", "鈴木精機"])
    wb.save(ws / "titled.xlsx")
    result = cli(runner, "prospects", "import", "titled.xlsx")
    assert result.exit_code == 1
    assert 'titled.xlsx: row 6, email: "bad address" is not a valid address' in result.output  # Excel's numbers
    result = cli(runner, "prospects", "import", "titled.xlsx", "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert "column names read from row 4" in result.output
    assert prospect(eng, "taro@example.co.jp")["company"] == "山田製作所"


def test_header_row_option_and_csv_title_rows(ws, eng, runner):
    text = "見込み客一覧,,\n2026/11/30 現在,,\nname,e-mail,company\nA,a@example.jp,X\n"
    (ws / "t.csv").write_text(text, encoding="cp932")
    found = json.loads(cli(runner, "prospects", "import", "t.csv", "--json", "--dry-run").output)
    assert found["header_row"] == 3 and found["created"] == 1
    forced = cli(runner, "prospects", "import", "t.csv", "--header-row", "3", "--json")
    assert json.loads(forced.output)["created"] == 1
    wrong = cli(runner, "prospects", "import", "t.csv", "--header-row", "1")
    assert wrong.exit_code == 1 and "no e-mail column found" in wrong.output
    missing = cli(runner, "prospects", "import", "t.csv", "--header-row", "40")
    assert missing.exit_code == 1 and "there is no row 40" in missing.output


def test_every_problem_of_a_row_is_reported_at_once(ws, eng, runner):
    (ws / "bad.csv").write_text(
        "email,name,temperature,rank,next action due,time zone\n"
        "not-an-address,A,lukewarm,Z,2026/13/45,Mars/Base\n"
        "ok@example.jp,B,hot,A,2026/12/01,Asia/Tokyo\n"
        "ok2@example.jp,C,,D,,\n",
        encoding="utf-8",
    )
    result = cli(runner, "prospects", "import", "bad.csv")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("bad.csv: row 2")]
    assert [line.split(",")[1].split(":")[0].strip() for line in lines] == [
        "email",
        "temperature",
        "rank",
        "next_action_due",
        "time_zone",
    ]
    assert "bad.csv: row 4, rank" in result.output
    assert "error: 2 invalid row(s); nothing was imported" in result.output
    data = json.loads(cli(runner, "prospects", "import", "bad.csv", "--json").output)
    assert data["rejected_rows"] == 2 and len(data["rejected"]) == 6


def test_sansan_export(ws, eng, runner):
    (ws / "sansan.csv").write_bytes((FIXTURES / "sansan_export.csv").read_bytes())
    result = cli(runner, "prospects", "import", "sansan.csv", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["encoding"] == "cp932" and data["created"] == 3 and data["no_consent"] == 0
    assert data["opted_out"] == 1
    taro = prospect(eng, "taro@yamada.example.co.jp")
    assert (taro["name"], taro["company"], taro["title"]) == ("山田 太郎", "株式会社山田製作所", "工場長")
    assert taro["department"] == "生産技術部"  # 部署名 is the department field (postal labels)
    assert taro["consent_basis"] == "business_card" and taro["consent_source"] == "名刺交換"
    assert taro["consent_at"] == datetime(2026, 10, 14, 15, 0, tzinfo=UTC)  # 2026/10/15 in Asia/Tokyo
    assert taro["status"] == "active"
    hanako = prospect(eng, "hanako@suzuki.example.co.jp")
    assert hanako["status"] == "unsubscribed"  # 配信停止 ○ honoured ...
    with eng.connect() as conn:  # ... as a suppression, which outlives the prospect row
        reason = conn.execute(
            select(Suppression.reason).where(Suppression.email_hash == email_hash("hanako@suzuki.example.co.jp"))
        ).scalar()
    assert reason == "unsubscribed"
    assert prospect(eng, "jiro@takahashi.example.jp")["company"] == "(株)髙橋金属"


def test_eight_export_and_consent_already_given_is_kept(ws, eng, runner):
    (ws / "first.csv").write_text("email,consent\nichiro@miura.example.jp,opt_in\n", encoding="utf-8")
    assert cli(runner, "prospects", "import", "first.csv").exit_code == 0
    (ws / "eight.csv").write_bytes((FIXTURES / "eight_export.csv").read_bytes())
    result = cli(runner, "prospects", "import", "eight.csv", "--json")
    assert result.exit_code == 0, result.output
    ichiro = prospect(eng, "ichiro@miura.example.jp")
    assert ichiro["name"] == "三浦 一郎" and ichiro["company"] == "三浦工業株式会社"
    assert ichiro["consent_basis"] == "opt_in"  # a card exchange never downgrades an opt-in
    assert ichiro["status"] == "active"  # メール配信: 可
    sato = prospect(eng, "jiro.sato@sato.example.jp")
    assert sato["consent_basis"] == "business_card" and sato["status"] == "unsubscribed"  # メール配信: 不可


def test_files_that_used_to_print_a_traceback(ws, runner):
    (ws / "huge.csv").write_text("email," + "x" * 140_000 + "\na@example.jp,1\n", encoding="utf-8")
    result = cli(runner, "prospects", "import", "huge.csv")
    assert result.exit_code == 1 and result.output.startswith("error: huge.csv: row 1: a cell is longer than 131,072")

    (ws / "empty.xlsx").write_bytes(b"")
    result = cli(runner, "prospects", "import", "empty.xlsx")
    assert result.exit_code == 1 and "error: empty.xlsx: the file is empty" in result.output

    (ws / "corrupt.xlsx").write_bytes(b"PK\x03\x04 not really a zip" * 10)
    result = cli(runner, "prospects", "import", "corrupt.xlsx")
    assert result.exit_code == 1 and "error: corrupt.xlsx: not a readable .xlsx workbook" in result.output

    wb = openpyxl.Workbook()
    wb.active.append(["email"])
    for i in range(200):
        wb.active.append([f"p{i}@example.jp"])
    wb.save(ws / "ok.xlsx")
    with zipfile.ZipFile(ws / "ok.xlsx") as src, zipfile.ZipFile(ws / "cut.xlsx", "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data[: len(data) // 2]
            dst.writestr(item, data)
    result = cli(runner, "prospects", "import", "cut.xlsx")
    assert result.exit_code == 1 and "error: cut.xlsx: sheet 'Sheet' is damaged after row" in result.output
    for name in ("empty.xlsx", "corrupt.xlsx", "cut.xlsx"):
        assert "Traceback" not in cli(runner, "events", "import", name).output
