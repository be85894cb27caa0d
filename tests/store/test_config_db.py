"""Configuration loading and schema management."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
from sqlalchemy import inspect

from nurture.cli.main import main
from nurture.core import config
from nurture.core.errors import ConfigError
from nurture.store import db
from nurture.store.models import Base

REPO = Path(__file__).resolve().parents[2]


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NURTURE_CONFIG", raising=False)
    cfg = config.load()
    assert cfg.database_url == f"sqlite:///{tmp_path / 'nurture.db'}"
    assert cfg.delivery.sender == "outbox" and cfg.cadence.interval_days == 14


def test_unknown_key_and_wrong_type_name_key_and_line(tmp_path):
    path = tmp_path / "nurture.toml"
    path.write_text(
        '[database]\nurl = "sqlite:///x.db"\n\n[cadence]\nmin_gap_dayz = 7\ninterval_days = "two weeks"\n'
        "[throttle]\nper_second = 0\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        config.load(path)
    text = str(err.value)
    assert f'{path}:5: unknown key "min_gap_dayz" in [cadence] (did you mean "min_gap_days"?)' in text
    assert f"{path}:6: cadence.interval_days must be a number" in text
    assert f"{path}:8: [throttle] per_second = 0 is out of range: use more than 0" in text


def test_invalid_toml_names_line(tmp_path):
    path = tmp_path / "nurture.toml"
    path.write_text('[database]\nurl = "x\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}:2: invalid TOML"):
        config.load(path)


def test_environment_overrides_secrets(tmp_path, monkeypatch):
    path = tmp_path / "nurture.toml"
    path.write_text('[tracking]\nsecret = "from-file-0123456789"\n', encoding="utf-8")
    monkeypatch.setenv("NURTURE_SECRET", "from-env-0123456789abcdef")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test")
    cfg = config.load(path)
    assert cfg.tracking_secret() == b"from-env-0123456789abcdef"
    assert cfg.sendgrid.api_key == "SG.test"


def test_missing_secret_explains_how_to_set_it(tmp_path, monkeypatch):
    monkeypatch.delenv("NURTURE_SECRET", raising=False)
    cfg = config.load(None) if not (tmp_path / "x").exists() else None
    monkeypatch.chdir(tmp_path)
    cfg = config.load()
    with pytest.raises(ConfigError, match="NURTURE_SECRET"):
        cfg.tracking_secret()


def test_example_config_is_valid_and_documents_every_setting():
    example = REPO / "config.example.toml"
    config.load(example)  # parses and validates
    text = example.read_text(encoding="utf-8")

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            if item.name in ("root", "source"):
                continue
            name = f"{prefix}.{item.name}" if prefix else item.name
            if dataclasses.is_dataclass(hints[item.name]):
                assert f"[{name}]" in text, f"config.example.toml lacks [{name}]"
                walk(hints[item.name], name)
            else:
                assert re.search(rf"^#?\s*{item.name}\s*=", text, re.M), f"{name} undocumented"

    walk(config.Config, "")


def test_bad_database_url_is_a_clear_error(tmp_path, runner):
    result = runner.invoke(main, ["--database", "nosuchdb://x", "init"])
    assert result.exit_code == 2 and "unknown database kind" in result.output
    result = runner.invoke(main, ["--database", "postgresql+psycopg://nobody@127.0.0.1:1/x", "init"])
    assert result.exit_code == 2 and "cannot reach the database" in result.output


def test_init_twice_and_schema_matches_models(db_url, runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = runner.invoke(main, ["--database", db_url, "init"])
    assert first.exit_code == 0 and "created" in first.output
    second = runner.invoke(main, ["--database", db_url, "init"])
    assert second.exit_code == 0 and "up to date" in second.output
    engine = db.engine_for(db_url)
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        migrated = {c["name"] for c in inspector.get_columns(table.name)}
        assert migrated == {c.name for c in table.columns}, table.name


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "[delivery]\nretry_base_seconds = 0",
            "[delivery] retry_base_seconds = 0 is out of range: use 1 to 86400 seconds",
        ),
        ("[delivery]\nretry_base_seconds = -5", "[delivery] retry_base_seconds = -5 is out of range"),
        ("[delivery]\nerror_budget = 0", "[delivery] error_budget = 0 is out of range: use 1 to 1000000"),
        ("[smtp]\nport = 70000", "[smtp] port = 70000 is out of range: use 1 to 65535"),
        ("[throttle]\nconcurrency = 0", "[throttle] concurrency = 0 is out of range: use 1 to 256"),
        ("[cadence]\ninterval_days = 0", "[cadence] interval_days = 0 is out of range: use more than 0"),
        ('[throttle]\ndomains = { "gmail.com" = -1 }', '[throttle] domains "gmail.com" = -1 is out of range'),
        ("[throttle.warmup]\ngrowth = 0.5", "[throttle.warmup] growth = 0.5 is out of range: use 1 to 10"),
    ],
)
def test_numbers_out_of_range_are_refused_at_load_with_file_line_and_key(tmp_path, setting, message):
    path = tmp_path / "nurture.toml"
    path.write_text(f"# settings\n{setting}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert str(err.value).startswith(f"{path}:3: {message}")


def test_every_numeric_setting_has_a_documented_range():
    """A new number in the config gets a valid range (tomlschema.bounded) and says it in config.example.toml."""
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")

    def walk(cls):
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[item.name]):
                walk(hints[item.name])
            elif hints[item.name] in (int, float):
                assert "range" in item.metadata, f"{cls.__name__}.{item.name} has no range"
                low, high, above = item.metadata["range"]
                line = re.search(rf"^{item.name}\s*=.*#\s*([\[(][^\]]*\])", text, re.M)
                assert line, f"config.example.toml does not give the range of {item.name}"

    walk(config.Config)


def test_the_removed_smtp_connections_says_what_to_do(tmp_path):
    path = tmp_path / "nurture.toml"
    path.write_text("[smtp]\nconnections = 2\n", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"nurture\.toml:2: \[smtp\] connections was removed: .*\[throttle\] concurrency"
    ):
        config.load(path)
