"""Headless Chromium driven through chromedriver's WebDriver HTTP API (plain urllib: no
client library), for tests that look at a page as a person would.

Blocking calls run in the gevent hub's thread pool, so nodes of this OS process
(the page's server among them) keep running while the browser works."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import gevent

from paxtor.testing import free_base_port

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1200,1400",
]  # fmt: skip


def missing() -> str | None:
    """Why no browser test can run here (None: chromium and chromedriver are installed)."""
    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian packages chromium and chromium-driver; .ci/run installs them)"
    return None


class Browser:
    """One chromedriver process and one Chromium session with a fresh profile; `close` ends both."""

    def __init__(self) -> None:
        self.port = free_base_port(range(1, 2)) + 1
        self.profile = tempfile.mkdtemp(prefix="paxtor-chromium-")
        self.driver = subprocess.Popen(
            ["chromedriver", f"--port={self.port}", "--allowed-ips=127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.session = ""
        try:
            self._wait_ready()
            options = {"binary": shutil.which("chromium"), "args": [*CHROMIUM_FLAGS, f"--user-data-dir={self.profile}"]}
            caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}
            self.session = self._post("/session", caps)["sessionId"]
        except BaseException:
            self.close()
            raise

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        return gevent.get_hub().threadpool.apply(self._blocking_request, (method, path, body))

    def _blocking_request(self, method: str, path: str, body: Any) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["value"]

    def _post(self, path: str, body: Any) -> Any:
        return self._request("POST", path, body)

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not gevent.get_hub().threadpool.apply(self._ready):
            if time.monotonic() > deadline or self.driver.poll() is not None:
                raise RuntimeError("chromedriver did not start")
            gevent.sleep(0.1)

    def _ready(self) -> bool:
        try:
            return bool(self._blocking_request("GET", "/status", None).get("ready"))
        except OSError:
            return False

    def get(self, url: str) -> None:
        self._post(f"/session/{self.session}/url", {"url": url})

    def script(self, source: str) -> Any:
        return self._post(f"/session/{self.session}/execute/sync", {"script": source, "args": []})

    def wait_for(self, source: str, timeout: float = 30.0) -> Any:
        """Run `source` (a script body that returns a value) until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.script(source)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page never satisfied: {source}")
            gevent.sleep(0.2)

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self._request("GET", f"/session/{self.session}/screenshot")))
        return path

    def close(self) -> None:
        try:
            if self.session:
                self._request("DELETE", f"/session/{self.session}")
        except OSError:
            pass
        finally:
            self.driver.terminate()
            try:
                gevent.get_hub().threadpool.apply(self.driver.wait, (10,))
            except subprocess.TimeoutExpired:
                self.driver.kill()
                self.driver.wait()
            shutil.rmtree(self.profile, ignore_errors=True)
