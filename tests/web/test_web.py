"""The tracking server over real HTTP: uvicorn on a free loopback port, httpx as the client, both databases."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from webserver import CHROME, SECRET, LiveServer, make_config, seed_delivery, seed_prospect

from nurture.compose import links as tracking
from nurture.core import clock
from nurture.store.models import Delivery, Event, Prospect, Suppression, email_hash
from nurture.web import create_app
from nurture.web.hot import PIXEL
from nurture.web.pages import add_months, mask_address

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def serving(engine, db_url, root=None, flush_interval=0.02):
    """(server, config): the app on a live server; leaving stops it, which flushes buffered events.
    ``root=REPO`` gives it the shipped sample campaigns and templates."""
    holder = {}

    def factory(base):
        holder["config"] = make_config(db_url, base, root=root)
        return create_app(holder["config"], engine=engine, flush_interval=flush_interval)

    with LiveServer(factory) as server:
        yield server, holder["config"]


@pytest.fixture
def live(engine, db_url):
    with serving(engine, db_url) as pair:
        yield pair


@pytest.fixture
def client():
    with httpx.Client(timeout=10, headers={"User-Agent": CHROME}) as c:
        yield c


def events(engine, **where):
    stmt = select(Event).order_by(Event.id)
    for k, v in where.items():
        stmt = stmt.where(getattr(Event, k) == v)
    with engine.connect() as conn:
        return conn.execute(stmt).mappings().all()


def wait_for_events(engine, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = events(engine)
        if len(found) >= n:
            return found
        time.sleep(0.02)
    return events(engine)


def status(engine, pid):
    with engine.connect() as conn:
        return conn.execute(select(Prospect.status).where(Prospect.id == pid)).scalar_one()


def suppressed(engine):
    with engine.connect() as conn:
        return set(conn.execute(select(Suppression.email_hash)).scalars())


def path(url):
    return "/" + url.split("/", 3)[3]


# --------------------------------------------------------------------------------------------- health, pixel


def test_healthz(live, client):
    server, _ = live
    r = client.get(server.url + "/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_open_pixel_records_a_labelled_open(live, client, engine):
    server, config = live
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid)
    url = tracking.urls_for(config, did, pid)["open_pixel"]
    r = client.get(url)
    assert r.status_code == 200 and r.content == PIXEL and r.headers["content-type"] == "image/gif"
    assert "no-store" in r.headers["cache-control"]
    (e,) = wait_for_events(engine, 1)
    assert (e["type"], e["delivery_id"], e["prospect_id"], e["source"]) == ("opened", did, pid, "pixel")
    assert (e["label"], e["rule"], e["ip"], e["user_agent"]) == ("human", "browser", "127.0.0.1", CHROME)
    assert status(engine, pid) == "active"


@pytest.mark.parametrize(
    "token",
    [
        "garbage.gif",
        "WyI1Il0.AAAAAAAAAAAAAAAAAAAAAA.gif",
        "x" * 5000,
        tracking.sign(b"wrong-secret-0123456789", "open", 1) + ".gif",
    ],
)
def test_open_pixel_with_a_bad_token_still_answers_a_gif_and_records_nothing(live, client, engine, token):
    server, _ = live
    r = client.get(f"{server.url}/o/{token}")
    assert r.status_code == 200 and r.content == PIXEL
    time.sleep(0.1)
    assert events(engine) == []


def test_head_on_the_pixel_is_labelled_machine(live, client, engine):
    server, config = live
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid)
    r = client.head(tracking.urls_for(config, did, pid)["open_pixel"])
    assert r.status_code == 200
    (e,) = wait_for_events(engine, 1)
    assert (e["label"], e["rule"]) == ("machine", "head_request")


def test_preview_links_record_nothing(live, client, engine):
    server, config = live
    assert client.get(tracking.urls_for(config, 0, 0)["open_pixel"]).status_code == 200
    r = client.get(tracking.click_url(config, 0, 0, "https://example.com/"))
    assert r.status_code == 302
    time.sleep(0.1)
    assert events(engine) == []


# --------------------------------------------------------------------------------------------- clicks


def test_click_redirects_to_the_signed_target_and_records(live, client, engine):
    server, config = live
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid)
    r = client.get(tracking.click_url(config, did, 1, "https://example.co.jp/記事?id=1&"))
    assert r.status_code == 302
    assert r.headers["location"] == "https://example.co.jp/%E8%A8%98%E4%BA%8B?id=1&"
    (e,) = wait_for_events(engine, 1)
    assert (e["type"], e["url"], e["data"]["link_index"], e["source"]) == (
        "clicked",
        "https://example.co.jp/記事?id=1&",
        1,
        "link",
    )


def test_tampered_and_forged_click_tokens_get_404(live, client, engine):
    server, config = live
    good = tracking.click_url(config, 1, 0, "https://example.com/")
    token = good.rsplit("/", 1)[1]
    evil_body = tracking.sign(SECRET.encode(), "click", 1, 0, "https://evil.example/").split(".")[0]
    for bad in (
        token[:-2] + "AA",
        evil_body + "." + token.split(".")[1],
        tracking.sign(b"another-secret-0123456789", "click", 1, 0, "https://evil.example/"),
        tracking.sign(SECRET.encode(), "open", 1, 0, "https://evil.example/"),  # right key, wrong purpose
        "%2F%2Fevil.example",
    ):
        r = client.get(f"{server.url}/c/{bad}")
        assert r.status_code == 404 and "location" not in r.headers
        assert "evil" not in r.text
    time.sleep(0.1)
    assert events(engine) == []


@pytest.mark.parametrize(
    "target",
    [
        "javascript:alert(document.cookie)",
        "//evil.example/",
        "https:\\\\evil.example",
        "https://ok.example/\r\nSet-Cookie: a=b",
        "data:text/html,<script>alert(1)</script>",
        "/local/path",
    ],
)
def test_signed_but_unsafe_targets_are_refused(live, client, target):
    """Even a correctly signed token (e.g. a key leaked or a bug upstream) never redirects off http(s)."""
    server, _ = live
    token = tracking.sign(SECRET.encode(), tracking.CLICK, 1, 0, target)
    r = client.get(f"{server.url}/c/{token}")
    assert r.status_code == 404 and "location" not in r.headers


def test_honeypot_click_is_machine(live, client, engine):
    server, config = live
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid)
    r = client.get(tracking.honeypot_url(config, did))
    assert r.status_code == 200 and "location" not in r.headers
    (e,) = wait_for_events(engine, 1)
    assert (e["type"], e["label"], e["rule"]) == ("clicked", "machine", "honeypot")
    assert client.get(f"{server.url}/h/nope").status_code == 404


@pytest.mark.parametrize("order", ["honeypot-first", "honeypot-last"])
def test_a_caught_scanner_is_remembered_across_batches(live, client, engine, order):
    """The bot-labels issue's reproduction over real HTTP with the buffer on: one desktop-Chrome agent behind
    X-Forwarded-For 35.190.1.1 follows the honeypot link, then 0.5 s later fetches the pixel, then 0.5 s later a
    tracked link (each lands in its own ~20 ms batch); and the same hits with the honeypot last. All machine."""
    server, config = live
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid, sent_at=clock.now() - timedelta(hours=2))
    urls = [
        tracking.honeypot_url(config, did),
        tracking.urls_for(config, did, pid)["open_pixel"],
        tracking.click_url(config, did, 0, "https://example.com/article"),
    ]
    if order == "honeypot-last":
        urls = urls[1:] + urls[:1]
    for i, url in enumerate(urls):
        if i:
            time.sleep(0.5)
        assert client.get(url, headers={"X-Forwarded-For": "35.190.1.1"}).status_code in (200, 302)
    found = wait_for_events(engine, 3)
    assert len({e["recorded_at"] for e in found}) == 3, "each hit in its own batch"
    assert [(e["label"], e["ip"]) for e in found] == [("machine", "35.190.1.1")] * 3
    human = client.get(urls[0] if order == "honeypot-last" else urls[1], headers={"X-Forwarded-For": "198.51.100.20"})
    assert human.status_code == 200
    assert wait_for_events(engine, 4)[-1]["label"] == "human"


# --------------------------------------------------------------------------------------------- unsubscribe


def test_get_shows_a_japanese_page_and_never_unsubscribes(live, client, engine):
    server, config = live
    pid = seed_prospect(engine, language="ja")
    did = seed_delivery(engine, pid)
    url = tracking.urls_for(config, did, pid)["unsubscribe"]
    for _ in range(3):  # link scanners fetch it, maybe several times
        r = client.get(url)
        assert r.status_code == 200
    assert 'lang="ja"' in r.text and "配信を停止する" in r.text and "t***@example.co.jp" in r.text
    assert f'action="{path(url)}"' in r.text and 'name="List-Unsubscribe" value="One-Click"' in r.text
    assert "株式会社テスト" in r.text  # sender on the page
    assert r.headers["content-type"].startswith("text/html; charset=utf-8")
    time.sleep(0.1)
    assert status(engine, pid) == "active" and events(engine) == [] and suppressed(engine) == set()


def test_english_page_for_an_english_prospect(live, client, engine):
    """A delivery planned before deliveries had a language (language ""): the prospect's language."""
    server, config = live
    pid = seed_prospect(engine, "jane@example.com", language="en")
    r = client.get(tracking.urls_for(config, seed_delivery(engine, pid, language=""), pid)["unsubscribe"])
    assert 'lang="en"' in r.text and ">Unsubscribe</button>" in r.text


def test_the_mail_language_comes_first(live, client, engine):
    """The delivery's language (its campaign's, stored when planned) wins over the prospect's and the browser's;
    no campaign file is read for it (this server has none)."""
    server, config = live
    pid = seed_prospect(engine, "mixed@example.com", language="en")
    ja = tracking.urls_for(config, seed_delivery(engine, pid, campaign="mfg-insights", language="ja"), pid)
    en = tracking.urls_for(config, seed_delivery(engine, pid, campaign="saas-ops-digest", language="en"), pid)
    for name in ("unsubscribe", "preferences"):
        assert 'lang="ja"' in client.get(ja[name], headers={"Accept-Language": "en"}).text
        assert 'lang="en"' in client.get(en[name], headers={"Accept-Language": "ja"}).text


def test_language_falls_back_to_accept_language(live, client, engine):
    server, config = live
    pid = seed_prospect(engine, language="")
    url = tracking.urls_for(config, 0, pid)["unsubscribe"]
    assert 'lang="en"' in client.get(url, headers={"Accept-Language": "en-US,en;q=0.9"}).text
    assert 'lang="ja"' in client.get(url, headers={"Accept-Language": "ja,en;q=0.5"}).text


def test_one_click_post_unsubscribes_at_once_without_redirect(live, client, engine):
    server, config = live
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid)
    url = tracking.list_unsubscribe_headers(config, did, pid)["List-Unsubscribe"].split(">")[0][1:]
    # What Gmail sends (RFC 8058 section 3): a form-encoded body, no cookies.
    r = httpx.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert r.status_code == 200 and "location" not in r.headers
    # Effects are in the database before the answer: no waiting.
    assert status(engine, pid) == "unsubscribed"
    assert suppressed(engine) == {email_hash("taro@example.co.jp")}
    (e,) = events(engine)
    assert (e["type"], e["delivery_id"], e["source"], e["data"]["via"]) == ("unsubscribed", did, "web", "one-click")
    r = client.get(url)
    assert "すでに停止" in r.text and "<button" not in r.text


def test_one_click_post_as_multipart_form_data(live, engine):
    """RFC 8058 section 3: the POST SHOULD be multipart/form-data (it MAY be urlencoded)."""
    server, config = live
    pid = seed_prospect(engine)
    url = tracking.urls_for(config, seed_delivery(engine, pid), pid)["unsubscribe"]
    body = b'--b0undary\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--b0undary--\r\n'
    r = httpx.post(url, content=body, headers={"Content-Type": "multipart/form-data; boundary=b0undary"})
    assert r.status_code == 200 and status(engine, pid) == "unsubscribed"


def test_post_without_the_one_click_body_changes_nothing(live, client, engine):
    server, config = live
    pid = seed_prospect(engine)
    url = tracking.urls_for(config, seed_delivery(engine, pid), pid)["unsubscribe"]
    for body in (b"", b"List-Unsubscribe=Yes", b"foo=bar"):
        assert client.post(url, content=body).status_code == 400
    assert status(engine, pid) == "active" and suppressed(engine) == set()


def test_tampered_unsubscribe_token_is_404(live, client, engine):
    server, config = live
    pid = seed_prospect(engine)
    url = tracking.urls_for(config, 0, pid)["unsubscribe"]
    forged = tracking.sign(b"another-secret-0123456789", "unsubscribe", 0, pid)
    for bad in (url[:-3] + "AAA", f"{server.url}/u/{forged}"):
        assert client.get(bad).status_code == 404
        assert client.post(bad, content=b"List-Unsubscribe=One-Click").status_code == 404
    assert status(engine, pid) == "active"


# --------------------------------------------------------------------------------------------- preferences, view


def test_preferences_pause_less_often_and_unsubscribe(live, client, engine):
    server, config = live
    pid = seed_prospect(engine, language="ja")
    did = seed_delivery(engine, pid)
    urls = tracking.urls_for(config, did, pid)
    r = client.get(urls["preferences"])
    assert r.status_code == 200 and "一時停止" in r.text and 'value="pause:3"' in r.text
    # Both forms post to a relative URL: the page works on any origin (CSP form-action 'self').
    assert f'action="{path(urls["unsubscribe"])}"' in r.text and f'action="{path(urls["preferences"])}"' in r.text
    assert 'action="http' not in r.text and server.url not in r.text

    before = clock.now()
    r = client.post(urls["preferences"], data={"choice": "pause:3"})
    assert r.status_code == 200 and "まで配信を一時停止しました" in r.text
    with engine.connect() as conn:
        p = conn.execute(select(Prospect).where(Prospect.id == pid)).mappings().one()
    assert add_months(before, 3) - timedelta(minutes=1) <= p["paused_until"] <= add_months(clock.now(), 3)
    assert p["status"] == "active"

    assert client.post(urls["preferences"], data={"choice": "less:2"}).status_code == 200
    assert client.post(urls["preferences"], data={"choice": "less:99"}).status_code == 400
    assert client.post(urls["preferences"], data={"choice": "pause:-1"}).status_code == 400
    with engine.connect() as conn:
        assert conn.execute(select(Prospect.frequency_factor).where(Prospect.id == pid)).scalar_one() == 2.0
    assert [e["type"] for e in events(engine)] == ["paused", "frequency_changed"]

    # The preferences page's own unsubscribe form posts the RFC 8058 body to /u/.
    r = client.post(urls["unsubscribe"], data={"List-Unsubscribe": "One-Click"}, headers={"Accept": "text/html"})
    assert r.status_code == 200 and status(engine, pid) == "unsubscribed"
    assert events(engine, type="unsubscribed")[0]["data"]["via"] == "page"


def test_view_in_browser_page_escapes_what_it_shows(live, client, engine):
    server, config = live
    pid = seed_prospect(engine, language="en")
    did = seed_delivery(engine, pid, subject='<script>alert("x")</script> News')
    r = client.get(tracking.urls_for(config, did, pid)["view_in_browser"])
    assert r.status_code == 200 and "&lt;script&gt;" in r.text and "<script>" not in r.text
    r = client.get(tracking.urls_for(config, 0, 0)["view_in_browser"])
    assert r.status_code == 200 and ("preview" in r.text.lower() or "プレビュー" in r.text)
    assert client.get(f"{server.url}/v/abc.def").status_code == 404


def test_security_headers_on_pages(live, client, engine):
    server, config = live
    pid = seed_prospect(engine)
    r = client.get(tracking.urls_for(config, 0, pid)["unsubscribe"])
    assert r.headers["x-frame-options"] == "DENY" and "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-robots-tag"].startswith("noindex")


def test_clean_shutdown_loses_no_buffered_event(engine, db_url):
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid)
    with serving(engine, db_url, flush_interval=60) as (_, config), httpx.Client() as c:  # no flush before stop
        pixel = tracking.urls_for(config, did, pid)["open_pixel"]
        for _ in range(200):
            assert c.get(pixel).status_code == 200
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Event)).scalar_one() == 200


def test_pure_helpers():
    assert mask_address("taro@example.co.jp") == "t***@example.co.jp"
    from datetime import UTC, datetime

    assert add_months(datetime(2026, 1, 31, tzinfo=UTC), 1) == datetime(2026, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2026, 11, 15, tzinfo=UTC), 3) == datetime(2027, 2, 15, tzinfo=UTC)


def test_strings_have_the_same_keys_in_both_languages():
    from nurture.web.site import page_strings

    s = page_strings()
    assert set(s["ja"]) == set(s["en"])


# --------------------------------------------------------------------------------------------- a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("language, expected", [("ja", "配信を停止する"), ("en", "Unsubscribe")])
def test_unsubscribe_page_in_headless_chromium(live, engine, tmp_path, language, expected):
    """Renders the page in a real browser; the screenshot is kept as a test artifact (path printed)."""
    server, config = live
    pid = seed_prospect(engine, f"{language}@example.com", language=language)
    url = tracking.urls_for(config, seed_delivery(engine, pid), pid)["unsubscribe"]
    shot = tmp_path / f"unsubscribe-{language}.png"
    profile = tempfile.mkdtemp(prefix="nurture-chromium-")
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-quic",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=800,700",
        "--hide-scrollbars",
    ]
    try:
        subprocess.run([*cmd, f"--screenshot={shot}", url], check=True, capture_output=True, timeout=60)
        dom = subprocess.run([*cmd, "--dump-dom", url], check=True, capture_output=True, timeout=60).stdout.decode()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    print(f"\nscreenshot ({language}): {shot}")
    assert shot.exists() and shot.stat().st_size > 5000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert expected in dom and f'lang="{language}"' in dom
    keep = os.environ.get("NURTURE_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    # The browser fetched the page (twice) and nothing was unsubscribed by it.
    assert status(engine, pid) == "active"


def test_nurture_serve_command_runs_and_shuts_down_cleanly(tmp_path):
    """The real command in a subprocess: init, serve, a hit, SIGTERM -> the buffered open is in the database."""
    import signal
    import socket
    import sys

    from webserver import SECRET

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "nurture.toml").write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/n.db"\n\n[tracking]\nsecret = "{SECRET}"\n'
        f'base_url = "http://127.0.0.1:{port}"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    subprocess.run([sys.executable, "-m", "nurture", "init"], cwd=tmp_path, env=env, check=True, capture_output=True)
    from nurture.core.config import load
    from nurture.store import db

    config = load(tmp_path / "nurture.toml")
    engine = db.engine_for(config.database_url)
    pid = seed_prospect(engine)
    did = seed_delivery(engine, pid)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nurture", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(proc.stdout.read().decode() if proc.stdout else "no output") from None
                time.sleep(0.1)
        assert httpx.get(tracking.urls_for(config, did, pid)["open_pixel"]).content == PIXEL
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=20)[0].decode()
    # uvicorn re-raises the signal after its clean shutdown, so the exit status is "terminated by SIGTERM".
    assert proc.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in output, output
    assert f"nurture tracking server on http://127.0.0.1:{port}" in output
    assert [e["type"] for e in events(engine)] == ["opened"]
    db._engines.pop(config.database_url, None)
    engine.dispose()


def test_serve_without_a_secret_is_a_clear_error(runner, workspace):
    from nurture.cli.main import main

    (workspace / "nurture.toml").write_text(
        (workspace / "nurture.toml").read_text().replace('secret = "test-secret-0123456789abcdef"', 'secret = ""'),
        encoding="utf-8",
    )
    assert runner.invoke(main, ["init"]).exit_code == 0
    result = runner.invoke(main, ["serve", "--port", "1"])
    assert result.exit_code == 2 and "secret" in result.output and "Traceback" not in result.output


def test_view_in_browser_rerenders_the_mail_without_tracking(engine, db_url, client):
    """With the shipped sample campaign and templates, the view link shows the mail itself."""
    with serving(engine, db_url, root=REPO) as (server, config):
        pid = seed_prospect(engine, "view@example.co.jp", company="鈴木<精機>")
        did = seed_delivery(engine, pid, campaign="mfg-insights", item_key="labor-shortage")
        urls = tracking.urls_for(config, did, pid)
        r = client.get(urls["view_in_browser"])
        assert r.status_code == 200 and "<html" in r.text.lower()
        assert "鈴木&lt;精機&gt;" in r.text and "鈴木<精機>" not in r.text  # prospect data autoescaped
        assert urls["unsubscribe"] in r.text  # the footer's links are the real ones
        assert f"{server.url}/o/" not in r.text and f"{server.url}/c/" not in r.text  # no pixel, no tracked links
        assert "img-src" in r.headers["content-security-policy"]
        other = seed_delivery(engine, pid, campaign="mfg-insights", item_key="no-such-item")
        r = client.get(tracking.urls_for(config, other, pid)["view_in_browser"])
        assert r.status_code == 200 and "メールソフトの受信箱" in r.text  # falls back to the page
    time.sleep(0.05)
    assert events(engine) == []


def sample_root(tmp_path: Path) -> Path:
    """A copy of the shipped campaigns and templates that a test may change."""
    shutil.copytree(REPO / "campaigns", tmp_path / "campaigns")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    return tmp_path


def test_view_shows_the_campaigns_as_loaded_at_start(engine, db_url, client, tmp_path):
    """Campaign files are read when the app is created, never on a request: a file changed or removed while the
    server runs changes nothing until it restarts."""
    root = sample_root(tmp_path)
    with serving(engine, db_url, root=root) as (_, config):
        pid = seed_prospect(engine, "view@example.co.jp")
        did = seed_delivery(engine, pid, item_key="labor-shortage")
        url = tracking.urls_for(config, did, pid)["view_in_browser"]
        first = client.get(url)
        assert first.status_code == 200 and "人手不足" in first.text
        (root / "campaigns" / "mfg-insights.toml").unlink()
        again = client.get(url)
        assert again.status_code == 200 and again.text == first.text
    with serving(engine, db_url, root=root) as (_, config):  # restarted: the campaign is gone
        r = client.get(tracking.urls_for(config, did, pid)["view_in_browser"])
        assert r.status_code == 200 and "メールソフトの受信箱" in r.text and "人手不足" not in r.text


def test_a_broken_campaign_file_does_not_stop_the_server(engine, db_url, client, tmp_path, caplog):
    root = sample_root(tmp_path)
    path = root / "campaigns" / "mfg-insights.toml"
    path.write_text(
        path.read_text(encoding="utf-8").replace('language = "ja"', 'language = "klingon"'), encoding="utf-8"
    )
    with caplog.at_level("WARNING", logger="nurture.web.viewer"), serving(engine, db_url, root=root) as (_, config):
        assert "campaigns/mfg-insights.toml" in caplog.text and "skipped for /v" in caplog.text
        pid = seed_prospect(engine, "view@example.co.jp")
        broken = tracking.urls_for(config, seed_delivery(engine, pid, item_key="labor-shortage", language="ja"), pid)
        r = client.get(broken["view_in_browser"])
        assert r.status_code == 200 and "メールソフトの受信箱" in r.text  # the page instead of the mail
        assert 'lang="ja"' in client.get(broken["unsubscribe"]).text
        fine = seed_delivery(engine, pid, campaign="saas-ops-digest", item_key="slos", language="en")
        r = client.get(tracking.urls_for(config, fine, pid)["view_in_browser"])
        assert r.status_code == 200 and "img-src" in r.headers["content-security-policy"]  # the other one renders


def test_deliveries_planned_before_the_language_column_use_the_prospects(db_url, client):
    """Migration 0004 gives existing rows language "": their pages fall back to the prospect's language."""
    from alembic import command

    from nurture.store import db

    engine = db.engine_for(db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(db._alembic_config(conn), "0003")
        pid = seed_prospect(engine, "old@example.com", language="en")
        did = seed_delivery(engine, pid, language=None)
        db.upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(select(Delivery.language).where(Delivery.id == did)).scalar_one() == ""
        with serving(engine, db_url) as (_, config):
            r = client.get(tracking.urls_for(config, did, pid)["unsubscribe"], headers={"Accept-Language": "ja"})
            assert 'lang="en"' in r.text
    finally:
        db._engines.pop(db_url, None)
        engine.dispose()
