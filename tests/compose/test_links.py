"""Signed tracking URLs (nurture.compose.links): pure, no server."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from urllib.parse import unquote

import pytest

from nurture.compose import links as tracking
from nurture.core.config import Config
from nurture.core.errors import ConfigError, InputError

SECRET = b"test-secret-0123456789abcdef"


def config(**tracking_values):
    c = Config()
    values = {"secret": SECRET.decode(), "base_url": "https://news.example.co.jp/t/", **tracking_values}
    return dataclasses.replace(
        c,
        tracking=dataclasses.replace(c.tracking, **values),
        identity=dataclasses.replace(c.identity, unsubscribe_mailto="stop@example.co.jp"),
    )


def test_sign_verify_round_trip_with_any_text():
    token = tracking.sign(SECRET, "click", 12, 3, 'https://例え.jp/記事?a=1&b="x"')
    assert tracking.verify(SECRET, "click", token) == ("12", "3", 'https://例え.jp/記事?a=1&b="x"')
    assert all(c.isalnum() or c in "-_." for c in token)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # MAC changed
        lambda t: ("W" if t[0] != "W" else "X") + t[1:],  # payload changed
        lambda t: t.replace(".", ""),  # no separator
        lambda t: t + ".x",  # two separators
        lambda t: "",  # empty
        lambda t: t.split(".")[0] + ".!!!",  # not base64
        lambda t: "A" * 9000,  # too long
    ],
)
def test_tampered_tokens_fail(mutate):
    token = tracking.sign(SECRET, "open", 5)
    assert tracking.verify(SECRET, "open", mutate(token)) is None


def test_token_is_bound_to_secret_and_purpose():
    token = tracking.sign(SECRET, "unsubscribe", 1, 2)
    assert tracking.verify(b"another-secret-0123456789", "unsubscribe", token) is None
    assert tracking.verify(SECRET, "preferences", token) is None
    assert tracking.verify(SECRET, "unsubscribe", token) == ("1", "2")


def test_forged_payload_with_valid_looking_mac_fails():
    real = tracking.sign(SECRET, "click", 1, 0, "https://good.example/")
    forged_body = tracking.sign(SECRET, "click", 1, 0, "https://evil.example/").split(".")[0]
    assert tracking.verify(SECRET, "click", forged_body + "." + real.split(".")[1]) is None


def test_urls_for_and_paths():
    urls = tracking.urls_for(config(), 7, 9)
    assert set(urls) == {"unsubscribe", "preferences", "view_in_browser", "open_pixel"}
    assert urls["unsubscribe"].startswith("https://news.example.co.jp/t/u/")
    assert urls["preferences"].startswith("https://news.example.co.jp/t/p/")
    assert urls["view_in_browser"].startswith("https://news.example.co.jp/t/v/")
    assert urls["open_pixel"].startswith("https://news.example.co.jp/t/o/") and urls["open_pixel"].endswith(".gif")
    token = urls["unsubscribe"].rsplit("/", 1)[1]
    assert tracking.verify(SECRET, tracking.UNSUBSCRIBE, token) == ("7", "9")
    pixel = tracking.token_from_path(urls["open_pixel"].rsplit("/", 1)[1], tracking.OPEN)
    assert tracking.verify(SECRET, tracking.OPEN, pixel) == ("7",)


def test_click_url_signs_delivery_index_and_target():
    url = tracking.click_url(config(), 7, 2, "https://example.com/a?b=1")
    token = url.rsplit("/c/", 1)[1]
    assert tracking.verify(SECRET, tracking.CLICK, token) == ("7", "2", "https://example.com/a?b=1")
    assert tracking.honeypot_url(config(), 7).startswith("https://news.example.co.jp/t/h/")


@pytest.mark.parametrize(
    "target",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>",
        "//evil.example/",
        "https://ok.example/\r\nSet-Cookie: x=1",
        "https://ok.example/\nx",
        "https:\\\\evil.example",
        "/relative/path",
        "ftp://example.com/",
        "http://",
        "https://ok.example/ space",
        "mailto:a@example.com",
        "https:evil.example",
        "\x00https://ok.example/",
    ],
)
def test_unsafe_targets_are_refused(target):
    assert not tracking.is_safe_target(target)
    with pytest.raises(InputError):
        tracking.click_url(config(), 1, 0, target)


@pytest.mark.parametrize(
    "target",
    ["https://example.com", "http://example.com:8080/a?b=c#d", "https://例え.jp/記事", "HTTPS://EXAMPLE.COM/x"],
)
def test_safe_targets(target):
    assert tracking.is_safe_target(target)


def test_list_unsubscribe_headers_rfc8058():
    headers = tracking.list_unsubscribe_headers(config(), 7, 9)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = headers["List-Unsubscribe"].split(", ")
    assert https == f"<{tracking.urls_for(config(), 7, 9)['unsubscribe']}>"
    assert mailto.startswith("<mailto:stop@example.co.jp?subject=unsubscribe%20")
    token = unquote(mailto[:-1].split("subject=unsubscribe%20")[1])
    assert tracking.verify(SECRET, tracking.UNSUBSCRIBE, token) == ("7", "9")
    assert not any(c in headers["List-Unsubscribe"] for c in "\r\n")


def test_https_only_list_unsubscribe_without_mailto():
    c = config()
    c = dataclasses.replace(c, identity=dataclasses.replace(c.identity, unsubscribe_mailto=""))
    assert tracking.list_unsubscribe_headers(c, 0, 0)["List-Unsubscribe"].count("<") == 1


def test_missing_secret_is_a_config_error():
    with pytest.raises(ConfigError, match="secret"):
        tracking.urls_for(config(secret=""), 1, 1)


@pytest.mark.parametrize(
    "parts",
    [
        (),
        (1,),
        (12, 3, "https://example.com/a?b=1&c=2#frag"),
        ('quote"inside',),
        ("back\\slash",),
        ("tab\there",),
        ("nul\x00",),
        ("\x1f\x7f",),
        ("日本語", "例え.jp"),
        ("\u2028\u2029",),
        ("",),
        ("", ""),
    ],
)
def test_token_payload_is_exactly_the_json_of_the_parts(parts):
    """Tokens are built without json.dumps where no character needs escaping; the bytes must be the same as
    json.dumps makes (tokens in mails already sent keep verifying, and verify() parses JSON)."""
    payload = json.dumps([str(p) for p in parts], ensure_ascii=False, separators=(",", ":")).encode()
    mac = hmac.new(SECRET, b"click\x00" + payload, hashlib.sha256).digest()[:16]
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    assert tracking.sign(SECRET, "click", *parts) == f"{b64(payload)}.{b64(mac)}"
    assert tracking.verify(SECRET, "click", tracking.sign(SECRET, "click", *parts)) == tuple(str(p) for p in parts)


def test_links_object_makes_the_same_urls_as_the_module_functions():
    c = config()
    links = tracking.Links(c)
    assert links.for_mail(5, 9) == tracking.urls_for(c, 5, 9)
    assert links.click(5, 1, "https://example.com/") == tracking.click_url(c, 5, 1, "https://example.com/")
    assert links.honeypot(5) == tracking.honeypot_url(c, 5)
    reused = links.list_unsubscribe(5, 9, unsubscribe_url=links.for_mail(5, 9)["unsubscribe"])
    assert reused == tracking.list_unsubscribe_headers(c, 5, 9)
    with pytest.raises(ConfigError):
        tracking.Links(config(secret=""))
