"""Headless Chromium driven over the DevTools protocol through a pipe (``--remote-debugging-pipe``): no websocket
library and no webdriver, just JSON messages ended by NUL on file descriptors 3 (commands) and 4 (answers).

    with Browser(lang="ja") as b:
        b.go("http://127.0.0.1:8080/subscribe")
        b.js("document.querySelector('#email').value = 'a@example.jp'")
        b.js("document.querySelector('#subscribe').click()")
        b.wait_for("document.body.innerText.includes('確認メール')")
        b.screenshot(path)

Typing is done by setting values from script (what a person types arrives the same way for the server); clicks
are real DOM clicks, so the browser submits the form itself with its own headers (Origin, User-Agent).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, *, lang: str = "ja", width: int = 800, height: int = 1300) -> None:
        self.lang = lang
        self.size = (width, height)
        self._id = 0

    def __enter__(self) -> Browser:
        assert CHROMIUM, "chromium is not installed"
        self.profile = tempfile.mkdtemp(prefix="nurture-cdp-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def pipes_on_3_and_4() -> None:
            # The browser reads commands on fd 3 and writes answers on fd 4. Copy both above 10 first, so that
            # placing one cannot overwrite the other.
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                "--disable-component-update",
                f"--user-data-dir={self.profile}",
                f"--lang={self.lang}",
                f"--accept-lang={self.lang}",
                f"--window-size={self.size[0]},{self.size[1]}",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=pipes_on_3_and_4,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):  # the browser may be gone already
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer (events in between are skipped)."""
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, _, self._buffer = self._buffer.partition(b"\0")
            answer = json.loads(raw)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
        raise TimeoutError(method)

    def js(self, expression: str) -> Any:
        """The value of ``expression`` in the page (promises awaited)."""
        result = self.call(
            "Runtime.evaluate", session=True, expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait_for(self, condition: str, timeout: float = 20.0) -> None:
        """Wait until ``condition`` (a JS expression) is true in the current page (across navigations)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.js(f"document.readyState === 'complete' && !!({condition})"):
                    return
            except RuntimeError:
                pass  # the page is navigating: its context is gone for a moment
            time.sleep(0.05)
        raise TimeoutError(f"never true: {condition}; page: {self.text()[:500]!r}")

    def go(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)
        self.wait_for(f"location.href === {json.dumps(url)} || location.href.startsWith({json.dumps(url)})")

    def text(self) -> str:
        try:
            return str(self.js("document.body ? document.body.innerText : ''"))
        except RuntimeError:
            return ""

    def html(self) -> str:
        return str(self.js("document.documentElement.outerHTML"))

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
