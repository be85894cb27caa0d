"""Engine, sessions and schema upgrades for SQLite (embedded default) and PostgreSQL, and every statement that
differs between the two: the layers above speak SQLAlchemy Core and ask here when the dialects part.

SQLite runs in WAL mode with a busy timeout, so a tracking server and a sender can share one file;
``immediate=True`` sessions take the write lock at ``BEGIN`` (``BEGIN IMMEDIATE``), which is how senders
serialise their claims there. PostgreSQL claims with ``FOR UPDATE SKIP LOCKED`` instead (:func:`skip_locked`), and
planners serialise on an advisory lock (:func:`plan_lock`). ``INSERT ... ON CONFLICT`` is spelled by
:func:`insert_for` for the connection's dialect.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    Engine,
    RootTransaction,
    Select,
    Table,
    bindparam,
    create_engine,
    event,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql import FromClause

from nurture.core.errors import ConfigError
from nurture.store.suppression import sqlite_email_hash

MIGRATIONS = Path(__file__).parent / "migrations"
_engines: dict[str, Engine] = {}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling is switched off so that BEGIN (and BEGIN IMMEDIATE) is ours:
    # pysqlite otherwise defers BEGIN and a claim could read before it holds the write lock.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
    # SQLite has no SHA-256; suppression.email_sha256 compiles to this so the suppression check stays in SQL.
    dbapi_connection.create_function("nurture_email_hash", 1, sqlite_email_hash, deterministic=True)


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.info.pop("begin_mode", "")
    conn.exec_driver_sql(f"BEGIN {mode}".strip())


def engine_for(url: str) -> Engine:
    """One engine per URL per process. A bad URL or missing driver is a ConfigError saying what to do."""
    if url in _engines:
        return _engines[url]
    try:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except NoSuchModuleError:
        raise ConfigError(
            f"database URL {_safe(url)!r}: unknown database kind",
            hint="use sqlite:///nurture.db or postgresql+psycopg://user@host/dbname",
        ) from None
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"database URL {_safe(url)!r} needs the {exc.name} driver",
            hint="pip install 'nurture[postgres]' (installs psycopg)",
        ) from None
    except ArgumentError as exc:
        raise ConfigError(f"database URL {_safe(url)!r} is not valid: {exc}") from None
    _engines[url] = engine
    return engine


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database url>"


def dispose_all() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def begin(conn: Connection, *, immediate: bool = False) -> RootTransaction:
    """``conn.begin()``; with ``immediate`` on SQLite the transaction starts as ``BEGIN IMMEDIATE`` (the write
    lock is taken now, so nothing read in it can be changed by another writer before we write)."""
    if immediate and conn.dialect.name == "sqlite":
        conn.info["begin_mode"] = "IMMEDIATE"  # read and cleared by _sqlite_begin
    return conn.begin()


@contextlib.contextmanager
def transaction(engine: Engine, *, immediate: bool = False) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any exception.

    ``immediate=True`` on SQLite starts with ``BEGIN IMMEDIATE`` (take the write lock now), so two processes
    claiming work cannot both read the same free rows. On PostgreSQL it changes nothing.
    """
    with engine.connect() as conn, begin(conn, immediate=immediate), Session(bind=conn, expire_on_commit=False) as s:
        yield s
        s.flush()


class Bulk:
    """A statement run with many parameter sets (``executemany``), prepared once and reused.

    On SQLite the statement is compiled once and each call hands the driver tuples, converted by the same bind
    processors SQLAlchemy would use, each distinct value once per call (bulk imports and plans repeat values:
    one ``now`` for every row, the same dates). That halves the cost per row (bench/import.py) and is most of
    the bookkeeping saved per mail in ``nurture send`` (bench/send.py). Other databases take SQLAlchemy's own
    executemany. Rows are dicts with exactly the keys given (the statement's bind names).
    """

    def __init__(self, stmt: Any, dialect: Any, keys: list[str]) -> None:
        self.stmt = stmt
        self.sql: str | None = None
        if dialect.name != "sqlite" or dialect.paramstyle != "qmark":
            return
        compiled = stmt.compile(dialect=dialect, column_keys=keys)
        order = list(compiled.positiontup or ())
        if sorted(order) != sorted(keys):  # not the plain shape expected: let SQLAlchemy do it
            return
        self.sql = compiled.string
        self.order = order
        self.processors = [compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order]

    def run(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self.sql is None:
            conn.execute(self.stmt, rows)
            return
        columns = []
        for key, process in zip(self.order, self.processors, strict=True):
            values = [r[key] for r in rows]
            if process is not None:
                converted, last, last_out = [], object(), None
                for v in values:
                    if v is not last and v != last:
                        last, last_out = v, process(v)
                    converted.append(last_out)
                values = converted
            columns.append(values)
        conn.exec_driver_sql(self.sql, list(zip(*columns, strict=True)))


#: The PostgreSQL advisory lock ("nurt") that serialises planning batches across processes.
_PLAN_LOCK_KEY = 0x6E757274
# SQLite's write lock is not fair: a writer waiting for it sleeps and retries, and a planner that starts its next
# batch at once would keep it until the whole plan is done. Pausing this long between batches lets the senders
# claim and record (bench/send.py: the first mail after 0.4 s instead of after the plan).
_SQLITE_WRITER_PAUSE = 0.02


def insert_for(conn: Connection | Engine, table: FromClause) -> Any:
    """An ``INSERT`` into ``table`` that can take ``on_conflict_do_nothing`` / ``on_conflict_do_update``
    (PostgreSQL and SQLite spell them alike, through their own dialect's construct). ``table`` must be a
    :class:`~sqlalchemy.Table` (``Model.__table__``)."""
    if not isinstance(table, Table):
        raise TypeError(f"insert_for needs a Table, got {type(table).__name__}")
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def skip_locked(conn: Connection, stmt: Select[Any]) -> Select[Any]:
    """``stmt`` as a claim: on PostgreSQL ``FOR UPDATE SKIP LOCKED`` (workers never wait for each other's rows);
    on SQLite unchanged, since the caller's ``BEGIN IMMEDIATE`` already holds the one write lock."""
    return stmt.with_for_update(skip_locked=True) if conn.dialect.name == "postgresql" else stmt


def plan_lock(conn: Connection) -> None:
    """Serialise planning batches across processes for the rest of this transaction: a transaction-level
    advisory lock on PostgreSQL; on SQLite the caller's ``BEGIN IMMEDIATE`` already does it."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PLAN_LOCK_KEY})


def scope_lock(conn: Connection, namespace: int, keys: set[int]) -> None:
    """Serialise transactions that work on the same ``keys`` (e.g. prospect ids) for the rest of this
    transaction: transaction-level advisory locks ``(namespace, key)`` on PostgreSQL, taken in key order so that
    two transactions never deadlock on them; on SQLite the caller's ``BEGIN IMMEDIATE`` already serialises all
    writers. Used where a rule must see the rows another transaction is committing (bot labels that remember)."""
    if conn.dialect.name == "postgresql" and keys:
        conn.execute(
            text("SELECT count(pg_advisory_xact_lock(:ns, k)) FROM unnest(CAST(:keys AS integer[])) AS k"),
            {"ns": namespace, "keys": sorted(keys)},
        )


def writer_pause(engine: Engine) -> float:
    """Seconds a long writer (the planner) should pause between transactions so that others get the write lock:
    0.02 on SQLite, whose lock is not fair; 0 on PostgreSQL."""
    return _SQLITE_WRITER_PAUSE if engine.dialect.name == "sqlite" else 0.0


def insert_rows(
    conn: Connection, table: FromClause, rows: list[dict[str, Any]], *, ignore_conflicts_on: list[str] | None = None
) -> None:
    """INSERT many rows with the same keys into ``table`` (``ignore_conflicts_on``: the unique columns whose
    duplicates are skipped, ``ON CONFLICT DO NOTHING``), through :class:`Bulk`.

    ``table`` must be a :class:`~sqlalchemy.Table`; the parameter says FromClause because that is how
    SQLAlchemy's declarative base types ``Model.__table__``, which is what callers pass.
    """
    if not isinstance(table, Table):
        raise TypeError(f"insert_rows needs a Table, got {type(table).__name__}")
    if not rows:
        return
    stmt = insert_for(conn, table)
    if ignore_conflicts_on:
        stmt = stmt.on_conflict_do_nothing(index_elements=ignore_conflicts_on)
    Bulk(stmt, conn.dialect, list(rows[0])).run(conn, rows)


def insert_columns(
    conn: Connection, table: Table, rows: list[dict[str, Any]], *, ignore_conflicts_on: list[str] | None = None
) -> None:
    """:func:`insert_rows`, on PostgreSQL as one ``INSERT ... SELECT unnest(...)`` with one array per column: one
    short statement for the batch instead of a pipeline of one per row (bench/plan.py: the planner's inserts)."""
    if conn.dialect.name != "postgresql" or not rows:
        insert_rows(conn, table, rows, ignore_conflicts_on=ignore_conflicts_on)
        return
    keys = list(rows[0])
    arrays = [
        func.unnest(bindparam(f"a_{k}", [r[k] for r in rows], type_=ARRAY(table.c[k].type))).label(k) for k in keys
    ]
    stmt = pg_insert(table).from_select(keys, select(*arrays))
    if ignore_conflicts_on:
        stmt = stmt.on_conflict_do_nothing(index_elements=ignore_conflicts_on)
    conn.execute(stmt)


def _alembic_config(connection: Connection | None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration shipped with this version of nurture."""
    head = ScriptDirectory.from_config(_alembic_config(None)).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS}")  # a broken installation, not a user mistake
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Create or upgrade the schema to the newest revision; harmless when already there.

    Returns (revision before, revision after).
    """
    try:
        before = current_revision(engine)
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "head")
        return before, head_revision()
    except OperationalError as exc:
        raise ConfigError(
            f"cannot reach the database {_safe(str(engine.url))}: {exc.orig}",
            hint="check [database] url in nurture.toml or NURTURE_DATABASE_URL",
        ) from None


def row_estimate(conn: Connection, table: str) -> float | None:
    """PostgreSQL's estimate of the rows in ``table`` (``pg_class.reltuples``, kept by autovacuum and ANALYZE; -1
    when never analyzed); None on SQLite. Free, where ``count(*)`` reads the table."""
    if conn.dialect.name != "postgresql":
        return None
    value = conn.scalar(text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": table})
    return None if value is None else float(value)


def statistics_stale(conn: Connection, table: str, below: int = 1000) -> bool:
    """PostgreSQL: whether ``table`` was last analyzed with fewer than ``below`` rows, or never (always False on
    SQLite, which plans these lookups by index anyway). A first run on a fresh database fills such a table while
    the planner still believes it nearly empty (see :func:`analyze`)."""
    rows = row_estimate(conn, table)
    return rows is not None and rows < below


def analyze(engine: Engine, table: str) -> None:
    """``ANALYZE table`` on PostgreSQL (nothing on SQLite): fresh statistics now rather than when autovacuum gets
    to it, for a run that has just grown a table it keeps querying."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text(f'ANALYZE "{table}"'))


def require_schema(engine: Engine) -> None:
    """Raise a ConfigError telling the user to run ``nurture init`` unless the schema is current."""
    try:
        current = current_revision(engine)
    except OperationalError as exc:
        raise ConfigError(
            f"cannot reach the database {_safe(str(engine.url))}: {exc.orig}",
            hint="check [database] url in nurture.toml or NURTURE_DATABASE_URL",
        ) from None
    head = head_revision()
    if current != head:
        state = "has no nurture tables" if current is None else f"is at schema {current}, nurture needs {head}"
        raise ConfigError(f"the database {_safe(str(engine.url))} {state}", hint="run `nurture init`")


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def days_since(engine: Engine, column: Any, now: datetime) -> Any:
    """``now - column`` in days as a SQL number (reports compare it with per-row cadence intervals): interval
    arithmetic differs between the databases, so it lives here."""
    if engine.dialect.name == "postgresql":
        return func.extract("epoch", literal(now) - column) / 86400.0
    return func.julianday(now.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")) - func.julianday(column)


def json_array_elements(engine: Engine, column: Any) -> Any:
    """The elements of a JSON array column as a table with one column ``value`` (join it laterally), e.g. the
    event ids of ``score_changes.event_ids``: ``jsonb_array_elements_text`` on PostgreSQL, ``json_each`` on
    SQLite. Cast ``value`` to the type wanted."""
    if engine.dialect.name == "postgresql":
        return func.jsonb_array_elements_text(column).table_valued("value").lateral()
    return func.json_each(column).table_valued("value")
