"""Imports record where each consent came from: the file and row (issue 13), on both databases."""

from __future__ import annotations

from sqlalchemy import select

from nurture.people import import_file
from nurture.people.consent import consent_of
from nurture.store.models import ConsentRecord


def test_import_records_file_and_row(engine, tmp_path):
    path = tmp_path / "名刺リスト.csv"
    path.write_text(
        "email,name,consent_basis,consent_source,consent_at\n"
        "a@example.jp,A,business_card,名刺交換,2026-10-01\n"
        "b@example.jp,B,,,\n"
        "c@example.jp,C,existing_relationship,,\n",
        encoding="utf-8",
    )
    summary = import_file(engine, path)
    assert summary.created == 3
    with engine.connect() as conn:
        rows = conn.execute(
            select(ConsentRecord.email, ConsentRecord.basis, ConsentRecord.source_kind, ConsentRecord.source).order_by(
                ConsentRecord.email
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("a@example.jp", "business_card", "import", "名刺リスト.csv:2 (名刺交換)"),
        ("c@example.jp", "existing_relationship", "import", "名刺リスト.csv:4"),
    ]
    assert consent_of(engine, "a@example.jp")["records"][0]["given_at"].startswith("2026-09-30T15:00")
    # The same file again changes nothing: no second record.
    import_file(engine, path)
    with engine.connect() as conn:
        assert len(conn.execute(select(ConsentRecord.id)).all()) == 2
    # A later file that changes a basis adds a record naming that file and row.
    later = tmp_path / "seminar.csv"
    later.write_text("email,consent_basis\nb@example.jp,business_card\n", encoding="utf-8")
    import_file(engine, later)
    assert [r["source"] for r in consent_of(engine, "b@example.jp")["records"]] == ["seminar.csv:2"]
