"""platelab serve's page in a real browser: ``run_server`` in a subprocess (a fake reader,
port 0), Debian's Chromium driven headless by Playwright: pick a file, drop a file, and
an error from the API shown."""

from __future__ import annotations

import base64
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from platelab.data.imageio import decode_image

pytest.importorskip("fastapi")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="pip install playwright (the dev extra)"
)
# `playwright install` cannot download its own browsers here: Debian's chromium it is.
CHROMIUM = os.environ.get("PLATELAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: `apt-get install chromium` (make test installs it)",
        allow_module_level=True,
    )

from tests.infer.test_serve import jpeg  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SERVER = """
from platelab.infer.serve import run_server
from tests.infer.test_serve import FakeReader
run_server(FakeReader(), "127.0.0.1", 0)
"""
BOX, CORNERS = (0, 200, 0), (255, 0, 255)  # the page's colours


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    """The URL ``run_server`` printed, once ``/healthz`` answers."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=err)  # fmt: skip
    try:
        line = _first_line(proc, 60)
        assert line.startswith("platelab serve: http://127.0.0.1:"), (line, log.read_text())
        address = line.split()[-1]
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(address + "healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def page(url):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            tab = browser.new_page()
            tab.set_default_timeout(15_000)
            tab.goto(url)
            yield tab
        finally:
            browser.close()


def _pixel(page, x: int, y: int) -> np.ndarray:
    rgba = page.evaluate(
        "([x, y]) => Array.from(document.getElementById('canvas')"
        ".getContext('2d').getImageData(x, y, 1, 1).data)",
        [x, y],
    )
    return np.array(rgba[:3])


def _wait_drawn(page, plates: int) -> None:
    page.wait_for_function(f"document.getElementById('canvas').dataset.plates === '{plates}'")


def test_a_picked_photo_is_drawn_and_listed(page):
    data = jpeg(320, 240)
    page.set_input_files("#file", files=[{"name": "street.jpg", "mimeType": "image/jpeg",
                                          "buffer": data}])  # fmt: skip
    _wait_drawn(page, 1)
    rows = page.locator("#plates tr")
    assert rows.count() == 1 and "W320" in rows.first.inner_text()
    assert page.inner_text("#status") == "street.jpg: 320x240, 1 plate"
    assert page.evaluate("[canvas.width, canvas.height]") == [320, 240]
    # the fake plate: box (80, 60)-(240, 180) in green, corner polygon 20 px inside it
    assert np.abs(_pixel(page, 80, 120) - BOX).max() <= 10
    assert np.abs(_pixel(page, 100, 120) - CORNERS).max() <= 10
    # and the photo under them, as decoded here (JPEG decoders differ by a few levels)
    photo = decode_image(data)
    for x, y in ((10, 10), (300, 220), (160, 120)):
        assert np.abs(_pixel(page, x, y) - photo[y, x]).max() <= 6


def test_a_dropped_photo_replaces_the_last(page):
    drop = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "dropped.jpg", { type: "image/jpeg" }));
            return dt;
        }""",
        base64.b64encode(jpeg(200, 150, seed=5)).decode(),
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": drop})
    page.wait_for_function("document.getElementById('status').textContent.startsWith('dropped')")
    _wait_drawn(page, 1)
    assert page.locator("#plates tr").count() == 1
    assert "W200" in page.inner_text("#plates")
    assert page.evaluate("[canvas.width, canvas.height]") == [200, 150]


def test_an_api_error_shows_in_the_status(page):
    page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                          "buffer": b"not a photo at all\n"}])  # fmt: skip
    page.wait_for_function("document.getElementById('status').className === 'error'")
    assert "notes.txt is not an image" in page.inner_text("#status")
    assert page.locator("#plates tr").count() == 0  # the last photo's plates are gone
