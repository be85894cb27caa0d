"""Alembic environment. nurture runs migrations itself (``nurture init``) and hands over its connection."""

from alembic import context
from sqlalchemy import create_engine

from nurture.store.models import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only for `alembic` run by hand against sqlalchemy.url
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("alembic: set sqlalchemy.url, or run the migrations with `nurture init`")
    connection = create_engine(url).connect()

context.configure(
    connection=connection, target_metadata=target_metadata, render_as_batch=connection.dialect.name == "sqlite"
)
with context.begin_transaction():
    context.run_migrations()
