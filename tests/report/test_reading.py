"""Reports read PostgreSQL with their own settings (nurture.report.PG_SETTINGS: JIT off, a larger work_mem),
in their own transactions only: the engine they were given, and its other users, keep the server's defaults."""

from __future__ import annotations

from sqlalchemy import text

from nurture.report import PG_SETTINGS, reading
from nurture.store import db


def test_report_transactions_get_the_settings_and_nothing_else_does(db_url):
    engine = db.engine_for(db_url)
    if engine.dialect.name != "postgresql":
        assert reading(engine) is engine  # SQLite: nothing to set
        return
    with engine.connect() as conn:
        before = {name: conn.scalar(text(f"SHOW {name}")) for name in PG_SETTINGS}
    with reading(engine).connect() as conn:
        assert {name: conn.scalar(text(f"SHOW {name}")) for name in PG_SETTINGS} == PG_SETTINGS
        conn.commit()  # a second transaction on the same connection gets them again
        assert {name: conn.scalar(text(f"SHOW {name}")) for name in PG_SETTINGS} == PG_SETTINGS
    with engine.connect() as conn:  # the pooled connection the report used is back to the defaults
        assert {name: conn.scalar(text(f"SHOW {name}")) for name in PG_SETTINGS} == before
    assert before != PG_SETTINGS
