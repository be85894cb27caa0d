"""Fixtures of the delivery tests: ``ws``, a workspace for `nurture send` (see send_workspace.py)."""

from __future__ import annotations

import pytest
from send_workspace import TEMPLATE, TUESDAY_10_JST, campaign_toml, write_config

from nurture.store import db


@pytest.fixture
def ws(tmp_path, db_url, monkeypatch, smtp_server):
    """A workspace: config pointing at the test database and the SMTP server, two campaigns, templates."""
    (tmp_path / "templates" / "t").mkdir(parents=True)
    (tmp_path / "templates" / "t" / "news.mjml").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "alpha.toml").write_text(campaign_toml("alpha", 10, "製造業"), encoding="utf-8")
    (tmp_path / "campaigns" / "beta.toml").write_text(campaign_toml("beta", 5, "物流"), encoding="utf-8")
    write_config(tmp_path, db_url, smtp_server.port)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NURTURE_NOW", TUESDAY_10_JST)
    for var in ("NURTURE_CONFIG", "NURTURE_DATABASE_URL", "NURTURE_SECRET"):
        monkeypatch.delenv(var, raising=False)
    engine = db.engine_for(db_url)
    db.upgrade(engine)
    return tmp_path
