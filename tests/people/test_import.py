"""Prospect import: encodings, headers, normalisation, all-or-nothing, upsert rules, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import openpyxl
import pytest
from sqlalchemy import func, insert, select

from nurture.cli.main import main
from nurture.core import clock, config
from nurture.people import prospects
from nurture.store import db
from nurture.store.models import Prospect, ProspectTag, Suppression, email_hash

HEADER_JA = "メールアドレス,氏名,会社名,役職,業種,温度感,最終接触日,次回アクション,次回期限,担当者,同意,部署\n"
ROWS_JA = [
    "taro@example.co.jp,山田　太郎,株式会社山田製作所,工場長,製造業,ホット,2026/11/01,,,佐藤,名刺交換,生産技術部\n",
    "ＨＡＮＡＫＯ@Example.co.jp,鈴木 花子,鈴木精機株式会社,課長,製造業,ｳｫｰﾑ,2026-10-01 9:30,見積送付,2026/12/01,佐藤,,"
    "品質保証部\n",
    "jiro@example.jp,髙橋 次郎,㈱髙橋金属,部長,製造業,コールド,2026/9/5,,,田中,オプトイン,\n",
]


def write_csv(path, text, encoding):
    path.write_bytes(text.encode(encoding))
    return path


def cli(runner, *args):
    return runner.invoke(main, list(args), catch_exceptions=False)


def count(engine, model=Prospect):
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def prospect(engine, email):
    with engine.connect() as conn:
        return conn.execute(select(Prospect.__table__).where(Prospect.email == email)).mappings().one()


@pytest.fixture
def ws(workspace, runner):
    assert cli(runner, "init").exit_code == 0
    return workspace


@pytest.fixture
def ws_engine(ws):
    return db.engine_for(config.load().database_url)


@pytest.mark.parametrize("encoding", ["cp932", "utf-8-sig", "utf-8"])
def test_japanese_csv_in_every_excel_encoding(ws, ws_engine, runner, encoding):
    path = write_csv(ws / "list.csv", HEADER_JA + "".join(ROWS_JA), encoding)
    result = cli(runner, "prospects", "import", str(path), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["created"] == 3 and summary["rejected"] == [] and summary["no_consent"] == 1
    assert summary["encoding"] == encoding
    taro = prospect(ws_engine, "taro@example.co.jp")
    assert taro["name"] == "山田 太郎"  # full-width space folded
    assert taro["temperature"] == "hot" and taro["consent_basis"] == "business_card"
    assert taro["department"] == "生産技術部" and taro["attributes"] == {}  # 部署 is a field (postal labels)
    # 2026/11/01 in Asia/Tokyo is 2026-10-31 15:00 UTC
    assert taro["last_contact_at"] == datetime(2026, 10, 31, 15, 0, tzinfo=UTC)
    hanako = prospect(ws_engine, "hanako@example.co.jp")  # full-width and upper case folded
    assert hanako["temperature"] == "warm"  # half-width katakana ｳｫｰﾑ
    assert hanako["last_contact_at"] == datetime(2026, 10, 1, 0, 30, tzinfo=UTC)
    assert hanako["next_action"] == "見積送付" and hanako["next_action_due"] == date(2026, 12, 1)
    assert hanako["consent_basis"] == "unknown"
    jiro = prospect(ws_engine, "jiro@example.jp")
    assert jiro["company"] == "(株)髙橋金属" and jiro["name"] == "髙橋 次郎"  # CP932 extension characters


def test_bad_row_imports_nothing_and_names_row_and_field(ws, ws_engine, runner):
    rows = ROWS_JA + [
        "taro@,名無し,,,,,,,,,,\n",
        "ok@example.com,x,,,,ぬるい,,,,,,\n",
        "date@example.com,x,,,,,2026/13/45,,,,,\n",
    ]
    path = write_csv(ws / "list.csv", HEADER_JA + "".join(rows), "cp932")
    result = cli(runner, "prospects", "import", str(path))
    assert result.exit_code == 1
    assert 'row 5, email: "taro@" is not a valid address' in result.output
    assert 'row 6, temperature: "ぬるい" is not one of hot, warm, cold' in result.output
    assert 'row 7, last_contact_at: "2026/13/45" is not a real date' in result.output
    assert "nothing was imported" in result.output
    assert count(ws_engine) == 0

    result = cli(runner, "prospects", "import", str(path), "--skip-invalid", "--json")
    assert result.exit_code == 0
    summary = json.loads(result.output)
    assert summary["created"] == 3
    assert [r["row"] for r in summary["rejected"]] == [5, 6, 7]
    assert summary["rejected"][0] == {"row": 5, "field": "email", "value": "taro@", "reason": "is not a valid address"}
    assert count(ws_engine) == 3


def test_json_failure_exit_code_and_dry_run(ws, ws_engine, runner):
    path = write_csv(ws / "list.csv", HEADER_JA + "".join(ROWS_JA) + "x@,a,,,,,,,,,,\n", "utf-8")
    result = cli(runner, "prospects", "import", str(path), "--json")
    assert result.exit_code == 1 and json.loads(result.output)["written"] is False
    result = cli(runner, "prospects", "import", str(path), "--dry-run", "--skip-invalid")
    assert result.exit_code == 0 and "dry run" in result.output
    assert count(ws_engine) == 0


def test_duplicate_addresses_in_one_file(ws, ws_engine, runner):
    path = write_csv(ws / "d.csv", "email,name\na@example.com,A\nA@EXAMPLE.COM,B\n", "utf-8")
    result = cli(runner, "prospects", "import", str(path))
    assert result.exit_code == 1 and "row 3, email" in result.output and "first at row 2" in result.output


def test_reimport_updates_keeps_consent_and_suppression(ws, ws_engine, runner):
    path = write_csv(ws / "list.csv", HEADER_JA + "".join(ROWS_JA), "cp932")
    assert cli(runner, "prospects", "import", str(path)).exit_code == 0
    with ws_engine.begin() as conn:  # taro unsubscribed meanwhile
        conn.execute(
            Prospect.__table__.update().where(Prospect.email == "taro@example.co.jp").values(status="unsubscribed")
        )
        conn.execute(
            insert(Suppression).values(
                email_hash=email_hash("taro@example.co.jp"),
                reason="unsubscribed",
                source="test",
                created_at=datetime.now(UTC),
            )
        )
    again = HEADER_JA + ROWS_JA[0].replace("ホット", "ウォーム").replace("名刺交換", "") + ROWS_JA[1] + ROWS_JA[2]
    path2 = write_csv(ws / "list2.csv", again, "cp932")
    result = cli(runner, "prospects", "import", str(path2), "--json")
    summary = json.loads(result.output)
    assert (summary["created"], summary["updated"], summary["unchanged"]) == (0, 1, 2)
    taro = prospect(ws_engine, "taro@example.co.jp")
    assert taro["temperature"] == "warm"
    assert taro["consent_basis"] == "business_card"  # blank cell never resets consent
    assert taro["status"] == "unsubscribed"  # import never resubscribes
    unknown = write_csv(ws / "u.csv", "email,consent\ntaro@example.co.jp,unknown\n", "utf-8")
    cli(runner, "prospects", "import", str(unknown))
    assert prospect(ws_engine, "taro@example.co.jp")["consent_basis"] == "business_card"


def test_erased_address_is_not_imported_again(ws, ws_engine, runner):
    with ws_engine.begin() as conn:
        conn.execute(
            insert(Suppression).values(
                email_hash=email_hash("gone@example.com"),
                reason="erased",
                source="request",
                created_at=datetime.now(UTC),
            )
        )
    path = write_csv(ws / "e.csv", "email,name\ngone@example.com,Gone\nnew@example.com,New\n", "utf-8")
    summary = json.loads(cli(runner, "prospects", "import", str(path), "--json").output)
    assert summary["created"] == 1 and summary["suppressed_skipped"] == 1
    assert count(ws_engine) == 1


def test_xlsx_with_dates_tags_map_and_strengths(ws, ws_engine, runner):
    wb = openpyxl.Workbook()
    ws_ = wb.active
    ws_.append(["E-Mail (work)", "Name", "Company", "Temperature", "Last contact", "Tags", "共感", "Memo"])
    ws_.append(
        [
            "Ann@Example.com",
            "Ann Lee",
            "Acme Corp",
            "hot",
            datetime(2026, 11, 20, 9, 30),
            "seminar, vip",
            2,
            "met at expo",
        ]
    )
    ws_.append(["bob@example.com", "Bob", "Beta", "Cold", date(2026, 1, 5), "", 0, None])
    wb.save(ws / "list.xlsx")
    result = cli(runner, "prospects", "import", str(ws / "list.xlsx"), "--map", "E-Mail (work)=email", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["created"] == 2
    ann = prospect(ws_engine, "ann@example.com")
    assert ann["strength_empathy"] == 2 and ann["attributes"] == {"Memo": "met at expo"}
    assert ann["last_contact_at"] == datetime(2026, 11, 20, 0, 30, tzinfo=UTC)
    with ws_engine.connect() as conn:
        assert sorted(conn.execute(select(ProspectTag.tag)).scalars()) == ["seminar", "vip"]
    result = cli(runner, "prospects", "list", "--tag", "vip", "--json")
    assert [p["email"] for p in json.loads(result.output)] == ["ann@example.com"]


def test_file_level_errors_are_clear(ws, runner):
    path = write_csv(ws / "noemail.csv", "name,company\na,b\n", "utf-8")
    result = cli(runner, "prospects", "import", str(path))
    assert result.exit_code == 1 and "no e-mail column" in result.output and "--map" in result.output
    result = cli(runner, "prospects", "import", str(ws / "missing.csv"))
    assert result.exit_code == 1 and "file not found" in result.output
    (ws / "bin.csv").write_bytes(b"email\n\xff\xfe\xfa\x80\x81\n")
    result = cli(runner, "prospects", "import", str(ws / "bin.csv"))
    assert result.exit_code == 1 and "encoding" in result.output
    result = cli(runner, "prospects", "import", str(path), "--map", "name=nonsense")
    assert result.exit_code == 1 and 'unknown field "nonsense"' in result.output
    assert "Traceback" not in result.output


def test_list_filters_and_show(ws, ws_engine, runner):
    write_csv(ws / "l.csv", HEADER_JA + "".join(ROWS_JA), "utf-8")
    cli(runner, "prospects", "import", str(ws / "l.csv"))
    out = json.loads(cli(runner, "prospects", "list", "--temperature", "hot", "--json").output)
    assert [p["email"] for p in out] == ["taro@example.co.jp"]
    out = json.loads(cli(runner, "prospects", "list", "--owner", "佐藤", "--json").output)
    assert len(out) == 2
    with clock.frozen(datetime(2026, 11, 22, tzinfo=UTC)):
        out = json.loads(cli(runner, "prospects", "list", "--stale-days", "60", "--json").output)
    assert [p["email"] for p in out] == ["jiro@example.jp"]
    result = cli(runner, "prospects", "show", "HANAKO@example.co.jp")
    assert result.exit_code == 0 and "鈴木精機株式会社" in result.output
    result = cli(runner, "prospects", "show", "none@example.com")
    assert result.exit_code == 1 and "no prospect" in result.output


def test_commands_need_init_first(workspace, runner):
    result = cli(runner, "prospects", "list")
    assert result.exit_code == 2 and "nurture init" in result.output


def test_duplicate_across_batches_is_caught_without_remembering_every_address(ws, ws_engine, runner, monkeypatch):
    monkeypatch.setattr(prospects, "BATCH", 2)
    rows = "".join(f"p{i}@example.com,P{i}\n" for i in range(5)) + "P1@Example.com,again\n"
    path = write_csv(ws / "d.csv", "email,name\n" + rows, "utf-8")
    result = cli(runner, "prospects", "import", str(path), "--json")
    summary = json.loads(result.output)
    assert result.exit_code == 1 and summary["written"] is False
    assert summary["rejected"] == [
        {"row": 7, "field": "email", "value": "p1@example.com", "reason": "appears again (earlier in this file)"}
    ]
    assert count(ws_engine) == 0
    summary = json.loads(cli(runner, "prospects", "import", str(path), "--skip-invalid", "--json").output)
    assert summary["created"] == 5 and len(summary["rejected"]) == 1
