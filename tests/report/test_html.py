"""The HTML reports as a person sees them: rendered by headless Chromium on a desktop screen and printed on A4
(``--print-to-pdf``, then ``pdftoppm``). The PNGs are kept as artifacts (paths printed; ``NURTURE_ARTIFACTS=DIR``
copies them there)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import report_history as history

from nurture.core import clock
from nurture.core import config as configuration
from nurture.plan.campaigns import load_campaigns
from nurture.report import Params, build
from nurture.report.html import to_html
from nurture.store import db

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PDFTOPPM = shutil.which("pdftoppm")


@pytest.fixture
def reports(tmp_path):
    """The seven reports over the fixed history (SQLite: the page does not depend on the database)."""
    history.copy_campaigns(tmp_path)
    (tmp_path / "nurture.toml").write_text(f'[database]\nurl = "sqlite:///{tmp_path / "r.db"}"\n', encoding="utf-8")
    config = configuration.load(str(tmp_path / "nurture.toml"))
    engine = db.engine_for(config.database_url)
    db.upgrade(engine)
    history.load(engine)
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        with clock.frozen(history.NOW):
            defs = load_campaigns(config)
            out = {}
            for kind in ("ranks", "campaigns", "conversion", "leaks"):
                days = 730 if kind == "conversion" else 28
                out[kind] = build(
                    kind, engine, Params(since=history.NOW - timedelta(days=days), until=history.NOW), config, defs
                )
    finally:
        os.chdir(old)
        db._engines.pop(config.database_url, None)
        engine.dispose()
    return out


def test_pages_are_self_contained_and_translated(reports):
    page = to_html(reports["ranks"], "ja")
    assert '<html lang="ja">' in page and "ランク・温度感・ステージの変化" in page and "遷移の集計" in page
    assert "<script" not in page and "<link" not in page and not re.search(r"""(src|href)=["']https?:""", page)
    assert page.count("<svg") == 2  # rank flow, human vs machine
    assert "ev-machine" in page and "ev-human" in page  # machine events are shown apart, struck through
    assert "@page { size: A4" in page
    en = to_html(reports["campaigns"], "en")
    assert "Opens per week: human vs machine" in en and "Per campaign and item" in en and "alarm" in en
    ja = to_html(reports["campaigns"], "ja")
    assert "苦情率 33.33% (1 / 3)" in ja and "送信を一時停止" in ja
    conversion = to_html(reports["conversion"], "ja")
    assert "1,200,000" in conversion and "累積成約率" in conversion
    leaks = to_html(reports["leaks"], "ja")
    assert "90日以上接触なし" in leaks and "同意の記録なし" in leaks


def _chromium(args, out):
    profile = tempfile.mkdtemp(prefix="nurture-chromium-")
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--hide-scrollbars",
        *args,
    ]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=90)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert out.exists() and out.stat().st_size > 20000, out


@pytest.mark.skipif(CHROMIUM is None or PDFTOPPM is None, reason="chromium and pdftoppm (poppler-utils) are needed")
@pytest.mark.parametrize("kind, language", [("ranks", "ja"), ("campaigns", "en")])
def test_reports_render_on_screen_and_on_a4(reports, tmp_path, kind, language):
    page = tmp_path / f"{kind}-{language}.html"
    page.write_text(to_html(reports[kind], language), encoding="utf-8")
    desktop = tmp_path / f"{kind}-{language}-desktop.png"
    _chromium(["--window-size=1280,1600", f"--screenshot={desktop}", page.as_uri()], desktop)
    assert desktop.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = tmp_path / f"{kind}-{language}.pdf"
    _chromium(["--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri()], pdf)
    subprocess.run(
        [PDFTOPPM, "-png", "-r", "60", "-f", "1", "-l", "2", str(pdf), str(tmp_path / f"{kind}-{language}-a4")],
        check=True,
        timeout=60,
    )
    a4 = sorted(tmp_path.glob(f"{kind}-{language}-a4*.png"))
    assert a4 and all(p.stat().st_size > 10000 for p in a4)
    info = (
        subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout if shutil.which("pdfinfo") else ""
    )
    if info:
        assert "(A4)" in info, info  # pdfinfo names the paper size
    print(f"\nscreenshots: {desktop} {' '.join(map(str, a4))}")
    keep = os.environ.get("NURTURE_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for p in [desktop, *a4]:
            shutil.copy(p, Path(keep) / p.name)
