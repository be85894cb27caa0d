"""[handoff] and [digest] mistakes are named with file and line, and owners resolve as documented."""

from __future__ import annotations

import pytest

from nurture.core import config as configuration
from nurture.core.errors import ConfigError
from nurture.notify.owners import recipient


def test_bad_handoff_settings_name_file_and_line(tmp_path):
    path = tmp_path / "nurture.toml"
    path.write_text(
        '[handoff]\nlanguages = { "佐藤" = "fr" }\nwebhook_url = "hooks.slack.com/x"\nack_timeout = 30\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        configuration.load(path)
    message = str(info.value)
    assert f"{path}:4:" in message and 'unknown key "ack_timeout"' in message and "ack_timeout_minutes" in message
    path.write_text('[handoff]\nlanguages = { "佐藤" = "fr" }\n', encoding="utf-8")
    with pytest.raises(ConfigError, match='"佐藤" must be "ja" or "en"'):
        configuration.load(path)
    path.write_text('[handoff]\nwebhook_url = "hooks.slack.com/x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="must be an http"):
        configuration.load(path)


def test_owner_address_name_or_default(tmp_path):
    path = tmp_path / "nurture.toml"
    path.write_text(
        '[handoff]\ndefault_owner = "Sales@Example.co.jp"\nowners = { "佐藤" = "sato@example.co.jp" }\n'
        'languages = { "ann@example.com" = "en" }\n',
        encoding="utf-8",
    )
    config = configuration.load(path)
    assert recipient(config, "佐藤").address == "sato@example.co.jp"
    assert recipient(config, "佐藤").language == "ja"
    assert (recipient(config, "Ann@Example.com").address, recipient(config, "ann@example.com").language) == (
        "ann@example.com",
        "en",
    )
    assert recipient(config, "").address == "sales@example.co.jp"
    assert recipient(config, "鈴木").address == "sales@example.co.jp"  # a name without an address
