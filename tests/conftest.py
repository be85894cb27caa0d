"""Shared fixtures. Database tests run twice: on SQLite (always) and on PostgreSQL when
``NURTURE_TEST_POSTGRES_URL`` names a server (``.ci/run`` sets it when 127.0.0.1:5432 answers).
Each PostgreSQL test gets its own schema (``search_path``), dropped afterwards, so runs never see each other.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from nurture.store import db

#: Fixtures of the support modules beside this file (real SMTP and HTTP servers), registered once for every test;
#: clockshift moves the wall clock when NURTURE_TEST_CLOCK_SHIFT asks (``NURTURE_TEST_CLOCK_SHIFT=730d pytest``).
pytest_plugins = ["servers", "clockshift"]

REPO = Path(__file__).resolve().parent.parent
PG_ENV = "NURTURE_TEST_POSTGRES_URL"


def _pg_url(schema: str) -> str:
    base = os.environ[PG_ENV]
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A URL to an empty database: a SQLite file, or a fresh PostgreSQL schema (skipped without a server)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nurture.db'}"
        return
    if not os.environ.get(PG_ENV):
        pytest.skip(f"PostgreSQL: set {PG_ENV}=postgresql+psycopg://postgres@127.0.0.1:5432/test to run")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(os.environ[PG_ENV])
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = _pg_url(schema)
    try:
        yield url
    finally:
        engine = db._engines.pop(url, None)
        if engine is not None:
            engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(db_url):
    """A migrated engine on each database."""
    engine = db.engine_for(db_url)
    db.upgrade(engine)
    yield engine
    db._engines.pop(db_url, None)
    engine.dispose()


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def workspace(tmp_path, db_url, monkeypatch):
    """A working folder with a nurture.toml pointing at the test database, as a user's project would be.
    The CLI runs with this folder as its working directory."""
    (tmp_path / "nurture.toml").write_text(
        f'[database]\nurl = "{db_url}"\n\n[tracking]\nsecret = "test-secret-0123456789abcdef"\n'
        'base_url = "https://news.example.com"\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NURTURE_CONFIG", raising=False)
    monkeypatch.delenv("NURTURE_DATABASE_URL", raising=False)
    monkeypatch.delenv("NURTURE_SECRET", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def rsa_key():
    """A 2048-bit RSA key for DKIM: (PEM private key, the TXT record publishing its public half)."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)
