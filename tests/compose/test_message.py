"""build_mime(): the bytes parsed back with the stdlib parser, header injection refused, DKIM verified."""

from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
import itertools
import re
from datetime import UTC, datetime

import dkim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nurture.compose.message import (
    DkimKey,
    OutgoingMessage,
    _base64_lines,
    _encoded_words,
    build_mime,
    list_id_for,
    message_id_for,
)
from nurture.core import clock
from nurture.core import config as config_mod
from nurture.core.errors import ConfigError, HeaderInjectionError, HeaderTooLongError, InputError

LONG_JA_SUBJECT = (
    "株式会社テスト様へ：今月の製造業トピックス 2026年11月号 — supply chain & DX "
    "最新動向のまとめと、これからの展望について詳しく解説します（第３回）"
)
UNSUB = {
    "List-Unsubscribe": "<https://news.example.co.jp/u/abc.def>, <mailto:unsub@example.co.jp?subject=u-42>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def make(**kw) -> OutgoingMessage:
    base = dict(
        delivery_id=42,
        campaign="mfg-insights",
        to_address="taro@example.com",
        to_name="山田 太郎",
        from_address="news@example.co.jp",
        from_name="株式会社サンプル 広報部",
        reply_to="",
        subject=LONG_JA_SUBJECT,
        html="<p>こんにちは、{name}様</p>\n<p>本文です。</p>",
        text="こんにちは\n本文です。",
        list_unsubscribe=dict(UNSUB),
    )
    base.update(kw)
    return OutgoingMessage(**base)


def header_block(data: bytes) -> list[bytes]:
    """The top-level header names, one per field (continuation lines joined)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    return [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")]


def parse(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.default)


def test_required_headers_exactly_once_and_crlf_only():
    data = build_mime(make())
    names = header_block(data)
    for name in (
        b"from",
        b"to",
        b"subject",
        b"date",
        b"message-id",
        b"list-id",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
        b"mime-version",
        b"content-type",
    ):
        assert names.count(name) == 1, name
    assert b"\n" not in data.replace(b"\r\n", b"")  # no bare LF
    assert b"\r" not in data.replace(b"\r\n", b"")  # no bare CR
    assert all(len(line) <= 78 for line in data.split(b"\r\n")), "every line folded to 78 columns"


def test_long_japanese_subject_folds_and_decodes_back_exactly():
    data = build_mime(make())
    raw_subject = re.search(rb"\r\nSubject: (.*?)\r\n(?! )", data, re.S).group(1)
    assert raw_subject.count(b"\r\n ") >= 2, "a long subject is folded over several lines"
    assert raw_subject.isascii()
    msg = parse(data)
    assert msg["Subject"] == LONG_JA_SUBJECT
    # Decoding with the legacy API too (what many MUAs/filters use): RFC 2047 6.2 drops the folding.
    decoded = "".join(
        part.decode(cs or "ascii") if isinstance(part, bytes) else part
        for part, cs in email.header.decode_header(raw_subject.decode())
    )
    assert decoded == LONG_JA_SUBJECT


@pytest.mark.parametrize(
    "subject",
    [
        "Hello",
        "ａｂｃ１２３　全角スペース",
        "末尾に空白 ",
        "😀 emoji 𠮷野家",
        "x" * 120,
        "word " * 30,
        "Hello ",
        " leading",
        "a  b",
        "tab\there",
        'semi;colon: (p) "q"',
        "=?not",
    ],
)
def test_subjects_round_trip(subject):
    assert parse(build_mime(make(subject=subject)))["Subject"] == subject


@pytest.mark.parametrize(
    "name", ["山田 太郎", "Taro Yamada", 'O\'Brien, "Bob" (Sales)', "株式会社サンプル（営業部）", "a" * 90, ""]
)
def test_display_names_round_trip(name):
    msg = parse(build_mime(make(to_name=name, from_name=name)))
    for header in ("To", "From"):
        (address,) = msg[header].addresses
        assert address.display_name == name
    assert msg["To"].addresses[0].addr_spec == "taro@example.com"
    assert msg["From"].addresses[0].addr_spec == "news@example.co.jp"


def test_list_headers_message_id_and_date():
    with clock.frozen(datetime(2026, 11, 24, 1, 2, 3, tzinfo=UTC)):
        msg = parse(build_mime(make(reply_to="info@example.co.jp")))
    assert msg["List-Id"] == "<mfg-insights.example.co.jp>" == list_id_for("mfg-insights", "news@example.co.jp")
    assert msg["List-Unsubscribe"] == UNSUB["List-Unsubscribe"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"] == message_id_for(42, "mfg-insights", "news@example.co.jp")
    assert msg["Message-ID"].endswith("@example.co.jp>")
    assert msg["Reply-To"].addresses[0].addr_spec == "info@example.co.jp"
    assert msg["Date"].datetime == datetime(2026, 11, 24, 1, 2, 3, tzinfo=UTC)
    assert not msg.defects and not any(msg[h].defects for h in msg)


def test_message_id_is_stable_per_delivery_and_distinct_between_deliveries():
    assert message_id_for(1, "a", "x@example.jp") == message_id_for(1, "a", "x@example.jp")
    assert message_id_for(1, "a", "x@example.jp") != message_id_for(2, "a", "x@example.jp")
    assert parse(build_mime(make(message_id="<given.1@example.co.jp>")))["Message-ID"] == "<given.1@example.co.jp>"


@pytest.mark.parametrize(
    "text,html,ctes",
    [
        ("こんにちは\n本文です。", "<p>日本語のHTML</p>", {"base64"}),
        ("Plain English.\nSecond line.", "<p>short html</p>", {"7bit"}),
        ("English with one é", "<p>" + "long line " * 200 + "</p>", {"quoted-printable"}),
        ("line\n.\n..dots\nFrom here", "<p>x</p>", {"7bit"}),
    ],
)
def test_multipart_alternative_text_then_html(text, html, ctes):
    msg = parse(build_mime(make(text=text, html=html)))
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert parts[0]["Content-Transfer-Encoding"] in ctes
    # Canonical text is CRLF (RFC 2046 4.1.1); base64 keeps it through decoding, 7bit/QP do not.
    assert parts[0].get_content().replace("\r\n", "\n").rstrip("\n") == text
    assert parts[1].get_content().replace("\r\n", "\n").rstrip("\n") == html


FIELDS = ["to_address", "to_name", "from_address", "from_name", "reply_to", "subject", "list_id", "message_id"]


@pytest.mark.parametrize("field_name", FIELDS)
@pytest.mark.parametrize("bad", ["\r\nBcc: victim@example.com", "\nX: y", "a\rb", "nul\x00"])
def test_cr_lf_nul_in_any_header_value_is_refused(field_name, bad):
    value = "ok@example.com" + bad if "address" in field_name or field_name == "reply_to" else "ok" + bad
    with pytest.raises(HeaderInjectionError):
        build_mime(make(**{field_name: value}))


@pytest.mark.parametrize("field_name", ["subject", "to_name", "from_name"])
def test_encoded_words_in_input_are_refused(field_name):
    # CVE-2024-6923: an encoded-word that decodes to CRLF could inject a header through the generator.
    with pytest.raises(HeaderInjectionError, match="encoded-word"):
        build_mime(make(**{field_name: "=?utf-8?q?hi=0D=0ABcc:_x@example.com?="}))


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Campaign": "a\r\nBcc: x@example.com"},
        {"X-Ok": "fine", "Bad Name": "x"},
        {"From": "evil@example.com"},
        {"subject": "second subject"},
        {"X-Nul": "a\x00"},
    ],
)
def test_extra_headers_are_checked(headers):
    with pytest.raises(HeaderInjectionError):
        build_mime(make(extra_headers=headers))


def test_list_unsubscribe_values_checked():
    with pytest.raises(HeaderInjectionError):
        build_mime(make(list_unsubscribe={"List-Unsubscribe": "<https://x/u>\r\nBcc: a@b.c"}))
    with pytest.raises(HeaderInjectionError):
        build_mime(make(list_unsubscribe={"X-Other": "x"}))


@pytest.mark.parametrize(
    "address",
    ["Taro <taro@example.com>", "a@b@example.com", "a b@example.com", "a@example.com, b@example.com", "", "no-at-sign"],
)
def test_addresses_must_be_plain(address):
    with pytest.raises(HeaderInjectionError):
        build_mime(make(to_address=address))


def test_international_domain_is_punycoded():
    msg = parse(build_mime(make(to_address="info@例え.jp")))
    assert msg["To"].addresses[0].domain == "xn--r8jz45g.jp"


def test_extra_headers_are_added_once():
    msg = parse(build_mime(make(extra_headers={"X-Nurture-Campaign": "mfg-insights", "X-Note": "日本語"})))
    assert msg.get_all("X-Nurture-Campaign") == ["mfg-insights"]
    assert msg["X-Note"] == "日本語"


# ------------------------------------------------------------------------------------------------ DKIM

# rsa_key (PEM private key, DKIM TXT record): tests/conftest.py


def dns_for(txt: bytes, name: bytes = b"nurture._domainkey.example.co.jp."):
    def dnsfunc(qname, timeout=5):
        return txt if qname == name else None

    return dnsfunc


def test_dkim_signature_verifies_and_covers_list_unsubscribe(rsa_key):
    pem, txt = rsa_key
    data = build_mime(make(), DkimKey("example.co.jp", "nurture", pem))
    assert data.startswith(b"DKIM-Signature:")
    assert dkim.verify(data, dnsfunc=dns_for(txt))
    sig = parse(data)["DKIM-Signature"]
    signed = {h.strip().lower() for h in re.search(r"h=([^;]+)", sig.replace("\r\n", "")).group(1).split(":")}
    assert {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "mime-version",
        "content-type",
    } <= signed
    assert "d=example.co.jp" in sig and "s=nurture" in sig


@pytest.mark.parametrize(
    "old,new",
    [
        (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: nothing"),
        (b"<mailto:unsub@example.co.jp?subject=u-42>", b"<mailto:other@example.co.jp>"),
        (b"\r\nTo: ", b"\r\nTo: attacker@example.net, "),
    ],
)
def test_dkim_detects_tampering(rsa_key, old, new):
    pem, txt = rsa_key
    data = build_mime(make(), DkimKey("example.co.jp", "nurture", pem))
    assert old in data
    assert not dkim.verify(data.replace(old, new, 1), dnsfunc=dns_for(txt))


def test_dkim_detects_an_added_from(rsa_key):
    pem, txt = rsa_key
    data = build_mime(make(), DkimKey("example.co.jp", "nurture", pem))
    head, body = data.split(b"\r\n\r\n", 1)
    assert not dkim.verify(head + b"\r\nFrom: ceo@example.co.jp\r\n\r\n" + body, dnsfunc=dns_for(txt))


def test_dkim_key_from_config(tmp_path, rsa_key):
    pem, txt = rsa_key
    (tmp_path / "dkim.pem").write_bytes(pem)
    (tmp_path / "nurture.toml").write_text(
        '[dkim]\ndomain = "example.co.jp"\nselector = "nurture"\nprivate_key_path = "dkim.pem"\n', encoding="utf-8"
    )
    cfg = config_mod.load(tmp_path / "nurture.toml")
    key = DkimKey.from_config(cfg)
    assert key == DkimKey("example.co.jp", "nurture", pem)
    assert dkim.verify(build_mime(make(), key), dnsfunc=dns_for(txt))
    assert DkimKey.from_config(dataclasses.replace(cfg, dkim=config_mod.DkimConfig())) is None
    with pytest.raises(ConfigError, match="together"):
        DkimKey.from_config(dataclasses.replace(cfg, dkim=config_mod.DkimConfig(domain="example.co.jp")))
    missing = dataclasses.replace(cfg, dkim=dataclasses.replace(cfg.dkim, private_key_path="nope.pem"))
    with pytest.raises(ConfigError, match=r"nope\.pem"):
        DkimKey.from_config(missing)


@pytest.mark.parametrize("size", [0, 1, 56, 57, 58, 113, 114, 115, 57 * 40, 57 * 40 + 1, 30_000])
def test_base64_parts_are_76_column_lines_that_decode_back(size):
    """The fast base64 path (pybase64 + cut lines) against the standard library's encoder, around every line
    boundary (57 input bytes make one 76-character line), and through a full parse."""
    data = bytes((i * 7 + 3) % 256 for i in range(size))
    assert _base64_lines(data) == base64.encodebytes(data).replace(b"\n", b"\r\n")[:-2]
    text = "日本語のテキスト。" * (size // 27 + 1)
    msg = parse(build_mime(make(text=text, html=f"<p>{text}</p>")))
    raw_lines = [line for line in build_mime(make(text=text)).split(b"\r\n")]
    assert max(len(line) for line in raw_lines) <= 78
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n") == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a",
        "あ" * 13,
        "あ" * 14,
        "x" + "あ" * 13,
        "xx" + "あ" * 13,
        "😀" * 10,
        "a😀" * 10,
        "é" * 20,
        "x" * 39,
        "x" * 40,
    ],
)
@pytest.mark.parametrize("max_bytes", [39, 45])
def test_encoded_words_split_on_character_boundaries(text, max_bytes):
    """Each encoded-word carries whole UTF-8 characters and at most max_bytes of them (RFC 2047 5), as many as
    fit (fewest words), and together they decode to the text."""
    words = _encoded_words(text, max_bytes).split("\r\n ")
    chunks = [base64.b64decode(w.removeprefix("=?UTF-8?B?").removesuffix("?=")) for w in words]
    assert "".join(c.decode("utf-8") for c in chunks) == text  # each chunk decodes alone: whole characters
    assert all(len(c) <= max_bytes for c in chunks)
    assert all(len(c) + len(n.decode("utf-8")[0].encode()) > max_bytes for c, n in itertools.pairwise(chunks))


# -- every header line within 998 characters (RFC 5322 2.1.1), whatever the data ---------------------------------

_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(["A", " ", "株", "-"]), min_size=1, max_size=3000
)


@settings(max_examples=25, deadline=None)
@given(subject=_TEXT, name=_TEXT)
def test_every_header_line_fits_998_and_subject_and_names_survive(subject, name):
    """Subjects and display names of any length and script fold to lines of at most 998 characters (a long
    ASCII word of a subject as encoded-words), and decode back to the same text."""
    if not subject.strip():
        subject = "x" + subject
    data = build_mime(make(subject=subject, to_name=name, from_name=name))
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert max(len(line) for line in head) <= 998
    assert all(line.strip() for line in head)  # a fold never leaves a line of white space only
    assert parse(data)["Subject"] == subject


def test_what_cannot_be_folded_is_refused_for_that_mail():
    with pytest.raises(HeaderTooLongError, match="at most 254"):
        build_mime(make(to_address="a" * 300 + "@example.com"))
    with pytest.raises(HeaderTooLongError, match="cannot be folded"):
        build_mime(make(extra_headers={"X-Long": "x" * 1200}))


def test_text_that_cannot_be_encoded_is_refused_for_that_mail():
    with pytest.raises(HeaderInjectionError, match="not valid Unicode"):
        build_mime(make(to_name="Yamada \udcff"))
    with pytest.raises(InputError, match="body cannot be encoded as UTF-8"):
        build_mime(make(html="<p>\udcff</p>"))


def test_a_5000_character_name_is_not_a_5004_byte_line():
    data = build_mime(make(to_name="N" * 5000))
    assert max(len(line) for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")) <= 78
