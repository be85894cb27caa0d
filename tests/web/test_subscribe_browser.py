"""The sign-up in headless Chromium: the snippet of ``nurture form snippet`` on a second local server (another
origin, as the company's own site), filled in and sent by the browser; the confirmation mail at a real aiosmtpd
server; the link opened in the browser; the prospect active with the chosen topics and a consent record. The ja
and en pages are kept as screenshots (``NURTURE_ARTIFACTS=folder`` copies them out)."""

from __future__ import annotations

import contextlib
import email
import email.policy
import http.server
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from browser import CHROMIUM, Browser
from sqlalchemy import select
from test_subscribe import workspace
from webserver import LiveServer, make_config

from nurture.cli.consent import snippet_html
from nurture.compose import links as tracking
from nurture.store.models import ConsentRecord, Event, Prospect, ProspectTopic
from nurture.web import create_app

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)


@contextlib.contextmanager
def company_site(pages: dict[str, str]):
    """A second web server (another origin, as the company's site): serves ``pages`` by path."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def keep(shot: Path) -> None:
    assert shot.exists() and shot.stat().st_size > 5000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    folder = os.environ.get("NURTURE_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / shot.name)


def test_sign_up_from_another_origin_in_chromium(engine, db_url, tmp_path, smtp_server):
    root = workspace(tmp_path)
    pages: dict[str, str] = {}
    with company_site(pages) as company:
        holder = {}

        def factory(base):
            holder["config"] = make_config(
                db_url,
                base,
                root=root,
                delivery={"sender": "smtp", "preflight": False},
                smtp={"host": smtp_server.host, "port": smtp_server.port},
                identity={
                    "from_address": "news@mail.nurture-test.jp",
                    "postal_address": "〒100-0001 東京都千代田区1-1",
                },
                subscribe={
                    "enabled": True,
                    "min_fill_seconds": 1,
                    "industries": ["製造業", "建設業"],
                    "allowed_origins": [company],
                    "form_id": "hosted",
                },
            )
            return create_app(holder["config"], engine=engine, jobs=[])

        with LiveServer(factory) as server, Browser(lang="ja") as browser:
            config = holder["config"]
            snippet = snippet_html(config, "corp-site", "ja", ["セミナー案内", "製造業DX"])
            pages["/"] = f'<!doctype html><html lang="ja"><meta charset="utf-8"><body>{snippet}</body></html>'
            browser.go(company + "/")
            form = "document.querySelector('form.nurture-subscribe')"
            browser.wait_for(f"{form}.elements.token.value")  # the snippet fetched its token (CORS)
            browser.js(
                f"""(() => {{ const f = {form};
                f.elements.email.value = 'Suzuki@Example.JP';
                f.elements.name.value = '鈴木 一郎';
                f.elements.company.value = '鈴木工業';
                f.elements.industry.value = '建設業';
                f.querySelector('input[name=topic][value="セミナー案内"]').checked = true;
                f.elements.text.value = '導入事例を知りたい';
                f.elements.consent.checked = true; }})()"""
            )
            time.sleep(1.1)  # a person takes longer than min_fill_seconds
            browser.js(f"{form}.querySelector('button[type=submit]').click()")
            browser.wait_for("document.body.innerText.includes('確認メールをお送りしました')")
            assert browser.js("location.origin") == server.url  # the post went across origins
            assert "suzuki@example.jp" in browser.text()
            assert len(smtp_server.messages) == 1
            mail = email.message_from_bytes(smtp_server.messages[0].data, policy=email.policy.default)
            link = re.search(r"(http://\S+/s/\S+)", mail.get_body(("plain",)).get_content()).group(1)
            browser.go(link)
            assert "登録を確定する" in browser.text()
            shot = tmp_path / "subscribe-confirm-ja.png"
            browser.screenshot(shot)
            keep(shot)
            with engine.connect() as conn:
                assert conn.execute(select(Prospect.id)).first() is None  # opening the link alone changes nothing
            browser.js("document.querySelector('#confirm').click()")
            browser.wait_for("document.body.innerText.includes('ご登録ありがとうございます')")
            # The preferences page lists the topics, the chosen one on.
            with engine.connect() as conn:
                pid = conn.execute(select(Prospect.id).where(Prospect.email == "suzuki@example.jp")).scalar_one()
            browser.go(tracking.urls_for(config, 0, pid)["preferences"])
            assert "☑ セミナー案内" in browser.text() and "☐ 製造業DX" in browser.text()
            shot = tmp_path / "preferences-topics-ja.png"
            browser.screenshot(shot)
            keep(shot)
            browser.go(f"{server.url}/subscribe")
            shot = tmp_path / "subscribe-ja.png"
            browser.screenshot(shot)
            keep(shot)
            assert "ニュースレターのご登録" in browser.text() and "製造業DX" in browser.text()
            with Browser(lang="en") as english:
                english.go(f"{server.url}/subscribe")
                assert "Subscribe to our newsletter" in english.text()
                shot = tmp_path / "subscribe-en.png"
                english.screenshot(shot)
                keep(shot)
    with engine.connect() as conn:
        p = conn.execute(select(Prospect).where(Prospect.email == "suzuki@example.jp")).one()
        topics = dict(conn.execute(select(ProspectTopic.topic, ProspectTopic.subscribed)).all())
        record = conn.execute(select(ConsentRecord)).one()
        types = sorted(conn.execute(select(Event.type).where(Event.prospect_id == p.id)).scalars())
    assert (p.status, p.consent_basis, p.consent_source, p.industry) == ("active", "opt_in", "form:corp-site", "建設業")
    assert topics == {"セミナー案内": True, "製造業DX": False}
    assert record.source == "corp-site" and "HeadlessChrome" in record.user_agent and record.confirmed_at
    assert types == ["inquired", "signed_up"]
