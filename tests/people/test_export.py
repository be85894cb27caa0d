"""Prospect export: headers the import reads, formula cells defused, and the export -> import round trip (CP932
CSV with Japanese text and formula-looking cells, .xlsx, English headers) changing nothing."""

from __future__ import annotations

import csv
import io
import json

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from nurture.cli.main import main
from nurture.core import config
from nurture.people import prospects
from nurture.people.cells import cell_text
from nurture.people.export import COLUMNS, STATUS_HEADERS, headers_for
from nurture.people.tabular import defuse, header_key, undefuse
from nurture.store import db
from nurture.store.models import Prospect, ProspectTag

#: Japanese text, CP932 extension characters, the wave dash, and cells a spreadsheet would run as formulas.
SOURCE = (
    "メールアドレス,氏名,会社名,役職,業種,温度感,ステージ,ランク,担当者,最終接触日,次回アクション,次回期限,"
    "タグ,同意,同意取得元,同意取得日,既存取引,紹介者,メモ\n"
    'taro@example.co.jp,山田 太郎,"=HYPERLINK(""http://evil.example/"",""開く"")",工場長,製造業,ホット,SQL,A,佐藤,'
    "2026/11/01 9:30,見積送付 10〜12月,2026/12/01,展示会;重要,名刺交換,展示会 2026,2026/10/01,2,生産技術部,"
    "@SUM(A1:A3)\n"
    "hanako@example.co.jp,鈴木 花子,㈱髙橋金属,-課長,製造業,cold,customer,B,,2026-10-01 09:30:15,+81 3 0000,,"
    ",オプトイン,,,,品質保証部,'=already quoted\n"
    "jiro@example.jp,Jiro,Example Inc.,,,warm,lost,C,,,,,,,,,,,\n"
)


def cli(runner, *args):
    return runner.invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def ws(workspace, runner):
    assert cli(runner, "init").exit_code == 0
    (workspace / "source.csv").write_text(SOURCE, encoding="utf-8")
    result = cli(runner, "prospects", "import", "source.csv", "--json")
    assert result.exit_code == 0, result.output
    return workspace


@pytest.fixture
def eng(ws):
    return db.engine_for(config.load().database_url)


def snapshot(engine):
    """Everything the import can set, per prospect: a round trip must leave it exactly as it was."""
    columns = [c for c in Prospect.__table__.c if c.name not in ("id", "created_at", "updated_at", "scored_at")]
    with engine.connect() as conn:
        rows = {r.email: dict(r._mapping) for r in conn.execute(select(*columns))}
        for pid_email, tag in conn.execute(
            select(Prospect.email, ProspectTag.tag).join(ProspectTag, ProspectTag.prospect_id == Prospect.id)
        ):
            rows[pid_email].setdefault("tags", set()).add(tag)
        updated = {r.email: r.updated_at for r in conn.execute(select(Prospect.email, Prospect.updated_at))}
    return rows, updated


def test_every_header_is_one_the_import_reads():
    index = prospects._ALIAS_INDEX
    for name, ja, en in COLUMNS:
        assert index[header_key(ja)] == name, ja
        assert index[header_key(en)] == name, en
    for header in STATUS_HEADERS.values():
        assert index[header_key(header)] == "-"  # read-only: ignored by the import


@pytest.mark.parametrize("text", ["=1+2", "+81", "-x", "@SUM(A1)", "\tx", "\rx", "'=x", "''@y", "plain", "'plain"])
def test_defuse_round_trips(text):
    assert undefuse(defuse(text)) == text
    if text.lstrip("'")[:1] in ("=", "+", "-", "@", "\t", "\r"):
        assert defuse(text).startswith("'")
    else:
        assert defuse(text) == text


def test_cp932_round_trip_with_formula_cells_changes_nothing(ws, eng, runner):
    before, stamps = snapshot(eng)
    result = cli(runner, "prospects", "export", "--encoding", "cp932", "--out", "out.csv", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rows"] == 3 and summary["encoding"] == "cp932"
    assert summary["formula_cells_defused"] == 5  # =HYPERLINK, @SUM, -課長, +81, '=already quoted

    raw = (ws / "out.csv").read_bytes()
    text = raw.decode("cp932")  # really CP932
    cells = list(csv.reader(io.StringIO(text)))
    assert cells[0] == headers_for("ja", ["メモ", "紹介者"])
    taro = dict(zip(cells[0], cells[3], strict=True))  # rows in address order: hanako, jiro, taro
    assert taro["会社名"] == '\'=HYPERLINK("http://evil.example/","開く")'  # defused: a spreadsheet shows text
    assert taro["メモ"] == "'@SUM(A1:A3)"
    assert taro["最終接触日"] == "2026-11-01 09:30"  # Asia/Tokyo, as imported
    assert taro["次回アクション"] == "見積送付 10~12月"  # the import folded the wave dash as NFKC folds ～
    assert taro["温度感"] == "ホット" and taro["同意区分"] == "名刺交換" and taro["配信状態"] == "配信中"
    assert taro["タグ"] == "展示会, 重要"
    hanako = dict(zip(cells[0], cells[1], strict=True))
    # a source cell that was already defused ('=...) was stored as =... by the first import; exported defused again
    assert hanako["役職"] == "'-課長" and hanako["メモ"] == "'=already quoted"
    assert hanako["最終接触日"] == "2026-10-01 09:30:15"
    assert not any(c.startswith(("=", "+", "-", "@")) for row in cells for c in row)

    back = cli(runner, "prospects", "import", "out.csv", "--json")
    assert back.exit_code == 0, back.output
    data = json.loads(back.output)
    assert data["encoding"] == "cp932"
    assert (data["created"], data["updated"], data["unchanged"], data["rejected"]) == (0, 0, 3, [])
    assert data["custom_attributes"] == ["メモ", "紹介者"]
    assert snapshot(eng) == (before, stamps)


def test_xlsx_and_english_round_trip(ws, eng, runner):
    before, stamps = snapshot(eng)
    result = cli(runner, "prospects", "export", "--out", "out.xlsx", "--headers", "en")
    assert result.exit_code == 0, result.output
    sheet = openpyxl.load_workbook(ws / "out.xlsx").active
    header = [c.value for c in sheet[1]]
    assert header[:3] == ["email", "name", "company"] and header[-1] == "status"
    taro = {h: c for h, c in zip(header, sheet[4], strict=True)}
    assert taro["company"].value.startswith("=HYPERLINK")  # the exact text ...
    assert taro["company"].data_type == "s" and taro["company"].quotePrefix  # ... as text, never a formula
    assert taro["temperature"].value == "hot"
    assert taro["next action due"].value.year == 2026 and taro["next action due"].number_format == "yyyy-mm-dd"
    back = json.loads(cli(runner, "prospects", "import", "out.xlsx", "--json").output)
    assert (back["created"], back["updated"], back["unchanged"], back["rejected"]) == (0, 0, 3, [])
    assert snapshot(eng) == (before, stamps)


def test_filters_stdout_and_bad_encoding(ws, eng, runner):
    result = cli(runner, "prospects", "export", "--temperature", "hot")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("\ufeffメールアドレス") and len(lines) == 2 and lines[1].startswith("taro@")

    with eng.begin() as conn:
        conn.execute(Prospect.__table__.update().where(Prospect.email == "jiro@example.jp").values(name="Jiro 🍣"))
    bad = cli(runner, "prospects", "export", "--encoding", "cp932", "--out", "bad.csv")
    assert bad.exit_code == 1
    assert 'row 3, 氏名: "Jiro 🍣"' in bad.output and "utf-8-sig" in bad.output
    assert not (ws / "bad.csv").exists() and not list(ws.glob(".nurture-export-*"))  # no partial file
    assert cli(runner, "prospects", "export", "--format", "xlsx").exit_code == 1  # needs --out

    # an erased person is not exported (their placeholder address would not import back)
    assert cli(runner, "erase", "hanako@example.co.jp").exit_code == 0
    assert "hanako" not in cli(runner, "prospects", "export", "--encoding", "utf-8").stdout
    assert "erased.invalid" not in cli(runner, "prospects", "export", "--encoding", "utf-8").stdout


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("=+-@'\t\r a1山㈱～〜−,\"")), max_size=12))
def test_export_cell_reads_back_as_stored(text):
    """Whatever a stored value is (values are stored as cell_text made them), its CSV cell reads back as it."""
    stored = cell_text(text)
    buffer = io.StringIO()
    csv.writer(buffer).writerow([defuse(stored), "x"])
    (cells,) = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert cell_text(cells[0]) == stored
    assert not cells[0].startswith(("=", "+", "-", "@", "\t", "\r"))


def test_cell_text_undoes_the_defusing_only():
    assert cell_text("'=1+2") == "=1+2"
    assert cell_text("'plain") == "'plain"
    assert cell_text("l'=x") == "l'=x"


@pytest.mark.parametrize("name", ["list.pdf", "list.xls", "list.xlsm"])
def test_export_refuses_a_file_name_it_would_write_the_wrong_format_into(ws, runner, name):
    # A CSV silently written into list.xls (or list.pdf), or xlsx bytes into .xlsm, will not open in Excel.
    result = cli(runner, "prospects", "export", "--out", name)
    assert result.exit_code != 0 and result.output.startswith(f"error: {name}") and not (ws / name).exists()
    assert cli(runner, "prospects", "export", "--out", name, "--format", "csv").exit_code == 0  # said on purpose


def test_export_format_follows_csv_txt_xlsx_and_bare_names(ws, runner):
    for name in ("a.csv", "a.txt", "a", "a.XLSX"):
        assert cli(runner, "prospects", "export", "--out", name).exit_code == 0, name
    assert (ws / "a.XLSX").read_bytes()[:2] == b"PK" and (ws / "a").read_bytes()[:3] == b"\xef\xbb\xbf"
