"""The preflight before real sends (nurture.checks.preflight): the shipped example config unchanged, each kind of
problem alone, DKIM alignment by organizational domain, and `nurture check` / `nurture send` through the CLI."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tomllib
from pathlib import Path

import pytest

from nurture.checks import preflight
from nurture.cli.main import main
from nurture.core import config as configuration
from nurture.core.config import Config
from nurture.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
GOOD_SECRET = "Zq8vT3mWn6Rb1Xy5Kc9Hd2Lf7Gp4Js0A"


def good(**sections) -> Config:
    """A setup fit for real mail; ``sections`` replace fields per section."""
    base = Config()
    values = {
        "identity": dataclasses.replace(
            base.identity,
            organization="株式会社ミナト精機",
            from_name="ミナト精機 ニュース",
            from_address="news@minato-seiki.co.jp",
            postal_address="〒105-0001 東京都港区虎ノ門9-9-9",
            inquiry="info@minato-seiki.co.jp / 03-5555-1234",
            website="https://www.minato-seiki.co.jp",
        ),
        "delivery": dataclasses.replace(base.delivery, sender="smtp"),
        "tracking": dataclasses.replace(base.tracking, base_url="https://t.minato-seiki.co.jp", secret=GOOD_SECRET),
        "dkim": dataclasses.replace(base.dkim, domain="minato-seiki.co.jp", selector="s1", private_key_path="k.pem"),
    }
    for name, changes in sections.items():
        values[name] = dataclasses.replace(values[name], **changes)
    return dataclasses.replace(base, **values)


def keys(config: Config) -> list[str]:
    return [p.key for p in preflight.preflight_problems(config)]


def test_example_values_are_those_of_the_shipped_file():
    with (REPO / "config.example.toml").open("rb") as fh:
        identity = tomllib.load(fh)["identity"]
    for key, value in preflight.EXAMPLE_IDENTITY.items():
        assert identity[key] == value


def test_example_config_unchanged_with_a_real_sender_is_refused_with_one_error_per_problem():
    example = configuration.load(REPO / "config.example.toml")
    smtp = dataclasses.replace(example, delivery=dataclasses.replace(example.delivery, sender="smtp"))
    assert keys(smtp) == [
        "[identity] organization",
        "[identity] from_name",
        "[identity] from_address",
        "[identity] postal_address",
        "[identity] inquiry",
        "[identity] website",
        "[tracking] base_url",  # not https
        "[tracking] base_url",  # loopback
        "[tracking] secret",
    ]
    with pytest.raises(ConfigError) as caught:
        preflight.require_preflight(smtp)
    assert "9 problem(s)" in caught.value.message and "news@example.co.jp" in caught.value.message
    preflight.require_preflight(example)  # the outbox demo: nothing leaves, no preflight
    off = dataclasses.replace(smtp, delivery=dataclasses.replace(smtp.delivery, preflight=False))
    preflight.require_preflight(off)


def test_a_good_setup_passes():
    assert keys(good()) == []
    assert keys(good(dkim={"domain": "mail.minato-seiki.co.jp"})) == []  # subdomain: relaxed alignment
    assert keys(good(identity={"from_address": "news@news.minato-seiki.co.jp"})) == []


@pytest.mark.parametrize(
    ("dkim", "sender", "ok"),
    [
        ("minato-seiki.co.jp", "news@minato-seiki.co.jp", True),
        ("esp-mail.net", "news@minato-seiki.co.jp", False),
        ("co.jp", "news@minato-seiki.co.jp", False),  # a public suffix is nobody's organizational domain
        ("other.co.jp", "news@minato-seiki.co.jp", False),
        ("a.minato.github.io", "news@b.minato.github.io", True),  # private PSL section: minato.github.io
        ("alice.github.io", "news@bob.github.io", False),
        ("MAIL.Minato-Seiki.CO.JP.", "news@minato-seiki.co.jp", True),
    ],
)
def test_dkim_alignment(dkim, sender, ok):
    assert (keys(good(dkim={"domain": dkim}, identity={"from_address": sender})) == []) is ok


@pytest.mark.parametrize(
    "url",
    [
        "http://t.minato-seiki.co.jp",
        "https://localhost:8080",
        "https://127.0.0.1",
        "https://10.1.2.3",
        "https://192.168.0.10:8443",
        "https://169.254.1.1",
        "https://[::1]",
        "https://[fe80::1]",
        "https://t.example.com",
        "https://tracking.test",
        "https:///nohost",
    ],
)
def test_unreachable_base_urls(url):
    assert "[tracking] base_url" in keys(good(tracking={"base_url": url}))


@pytest.mark.parametrize(
    "url",
    [
        "https://127.1",  # browsers read these numeric hosts as IPv4 (WHATWG URL): all are 127.0.0.1
        "https://0x7f000001",
        "https://2130706433",
        "https://0177.0.0.1",
        "https://10.1",
        "https://t.minato-seiki.internal",  # ICANN's private-use TLD (2024)
        "https://t.home.arpa",  # RFC 8375
        "https://t.minato-seiki.co.jp?utm=x",  # links are base_url + "/u/...": a query or fragment breaks them all
        "https://t.minato-seiki.co.jp#top",
        "https://user:pw@t.minato-seiki.co.jp",  # credentials in every link of every mail
    ],
)
def test_base_urls_that_only_look_public(url):
    assert "[tracking] base_url" in keys(good(tracking={"base_url": url}))


def test_a_public_base_url_with_a_path_or_port_passes():
    assert keys(good(tracking={"base_url": "https://www.minato-seiki.co.jp/nurture/"})) == []
    assert keys(good(tracking={"base_url": "https://t.minato-seiki.co.jp:8443"})) == []
    assert keys(good(tracking={"base_url": "https://8.8.8.8"})) == []
    assert keys(good(tracking={"base_url": "https://t1.minato-seiki.co.jp"})) == []


@pytest.mark.parametrize(
    "secret", ["", "short-but-random-Xq9", "change-me-please-change-me-please-0", "a" * 40, "0123" * 10]
)
def test_placeholder_or_short_secrets(secret):
    assert keys(good(tracking={"secret": secret})) and set(keys(good(tracking={"secret": secret}))) == {
        "[tracking] secret"
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("from_address", "news@example.com"),
        ("reply_to", "sales@mail.example.net"),
        ("inquiry", "support@minato.test / 03-5555-1234"),
        ("website", "https://www.example.jp"),
        ("unsubscribe_mailto", "mailto:stop@example.org"),
    ],
)
def test_documentation_domains_in_identity(field, value):
    assert keys(good(identity={field: value}, dkim={"domain": ""})) == [f"[identity] {field}"]


@pytest.fixture
def tour(tmp_path, monkeypatch):
    """The README's tour: config.example.toml copied unchanged, the sample campaigns and templates."""
    shutil.copy(REPO / "config.example.toml", tmp_path / "nurture.toml")
    shutil.copytree(REPO / "campaigns", tmp_path / "campaigns")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    monkeypatch.chdir(tmp_path)
    for name in ("NURTURE_CONFIG", "NURTURE_SECRET", "NURTURE_DATABASE_URL", "NURTURE_PREVIOUS_SECRETS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_check_with_the_example_config(tour, runner):
    result = runner.invoke(main, ["check", "--json"])
    data = json.loads(result.output)
    assert data["setup"] == [] and data["preview_secret"] is True  # outbox: the demo checks as before
    text = (tour / "nurture.toml").read_text(encoding="utf-8").replace('sender = "outbox"', 'sender = "smtp"', 1)
    (tour / "nurture.toml").write_text(text, encoding="utf-8")
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 1
    assert "error     setup (" in result.output and "9 problems before real mail may leave" in result.output
    assert "[identity] from_address: still the example value 'news@example.co.jp'" in result.output
    data = json.loads(runner.invoke(main, ["check", "--json"]).output)
    assert data["ok"] is False  # the campaigns may be fine; the setup is not
    assert [p["severity"] for p in data["setup"]] == ["error"] * 9
    # A test rig that turned the refusal off still sees the problems, as warnings.
    text = text.replace("preflight = true", "preflight = false", 1)
    (tour / "nurture.toml").write_text(text, encoding="utf-8")
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    assert "warning   setup (" in result.output


def test_send_with_the_example_config_and_smtp_sends_nothing(tour, runner):
    text = (tour / "nurture.toml").read_text(encoding="utf-8").replace('sender = "outbox"', 'sender = "smtp"', 1)
    (tour / "nurture.toml").write_text(text, encoding="utf-8")
    assert runner.invoke(main, ["init"]).exit_code == 0
    result = runner.invoke(main, ["send"])
    assert result.exit_code == 2, result.output
    assert "refusing to send real mail with the smtp sender: 9 problem(s)" in result.output
    assert "Traceback" not in result.output


def test_check_and_preview_say_which_secret_signs_their_links(tour, runner, monkeypatch):
    monkeypatch.setenv("NURTURE_SECRET", GOOD_SECRET)
    data = json.loads(runner.invoke(main, ["check", "--json"]).output)
    assert data["preview_secret"] is False and "placeholder" not in data["note"]
    result = runner.invoke(main, ["preview", "mfg-insights", "--out", str(tour / "p.html")])
    assert result.exit_code == 0, result.output
    assert "placeholder" not in result.output and "signed with your [tracking] secret" in result.output


@pytest.mark.parametrize("old", ["short", "change-me-please-change-me-please", "x" * 40])
def test_a_weak_previous_secret_is_refused_too(old):
    # Tokens signed with any previous secret still verify: a guessable one lets anybody forge opt-out links.
    problems = preflight.preflight_problems(
        good(tracking={"previous_secrets": ["Pq7wE2rT9yU4iO1pA6sD3fG8hJ5kL0zX", old]})
    )
    assert [p.key for p in problems] == ["[tracking] previous_secrets"]
    assert "no. 2" in problems[0].message and old not in str(problems[0])  # never print a secret


def test_strong_previous_secrets_pass():
    assert keys(good(tracking={"previous_secrets": ["Pq7wE2rT9yU4iO1pA6sD3fG8hJ5kL0zX", "  "]})) == []
