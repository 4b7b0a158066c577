"""Real-browser harness: a `streamlit run` server on 127.0.0.1 and Debian's headless Chromium via Playwright.

No test tool downloads a browser: Playwright drives /usr/bin/chromium.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("PETSEG_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium keeps dialing out, and this machine refuses it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(data: Path, workspace: Path, log_path: Path, **options) -> Iterator[str]:
    """Start the app on a free loopback port; yield its base URL; stop it afterwards (options: streamlit_process)."""
    with streamlit_process(data, workspace, log_path, **options) as (_proc, url):
        yield url


@contextlib.contextmanager
def streamlit_process(data: Path, workspace: Path, log_path: Path, *, address: str = "127.0.0.1",
                      port: int | None = None, args: Sequence[str] = (), env: Mapping[str, str] | None = None
                      ) -> Iterator[tuple[subprocess.Popen, str]]:
    """:func:`streamlit_server` that also yields the server process (benchmarks read its peak memory).

    ``args`` are more ``streamlit run`` flags (e.g. ``--secrets.files``), ``env`` more environment variables.
    """
    port = port or free_port()
    if "--secrets.files" not in args:  # a developer's own secrets.toml (with [auth]) would gate every page
        args = [*args, "--secrets.files", str(log_path.parent / "no-secrets.toml")]
    env = dict(os.environ, PETSEG_DATA=str(data), PETSEG_HOME=str(workspace), **(env or {}))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "streamlit_app.py"),
                "--server.address", address, "--server.port", str(port), "--server.headless", "true",
                "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", *args,
            ],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://{address}:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited early:\n{log_path.read_text()[-2000:]}")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not become healthy:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            yield proc, url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def chromium_page(viewport: tuple[int, int] = (1400, 1000)) -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `make test` installs Debian's chromium when run as root")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            yield page
        finally:
            browser.close()


def wait_for_app(page, timeout_ms: int = 30_000) -> None:
    """Wait until Streamlit has finished running the script (no running indicator, app view present)."""
    page.wait_for_selector('[data-testid="stAppViewContainer"]', timeout=timeout_ms)
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')
                 && document.querySelectorAll('[data-testid="stSkeleton"]').length === 0""",
        timeout=timeout_ms,
    )
    page.wait_for_timeout(300)


def draw_stroke(page, editor: str, start: tuple[float, float] = (0.08, 0.10),
                end: tuple[float, float] = (0.30, 0.14)) -> None:
    """Drag the mouse across the mask editor ``editor`` (a CSS selector) from ``start`` to ``end``, given as
    fractions of the canvas: one brush stroke, as a user paints it."""
    box = page.locator(f"{editor} [data-role=canvas]").bounding_box()
    page.mouse.move(box["x"] + box["width"] * start[0], box["y"] + box["height"] * start[1])
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * end[0], box["y"] + box["height"] * end[1], steps=12)
    page.mouse.up()


def sign_in(page, url: str, issuer: str, email: str) -> None:
    """From the app's sign-in screen, through Streamlit's login route and the test provider's form (at ``issuer``)
    back to the app at ``url``, signed in as ``email``."""
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{issuer}/authorize?*", timeout=30_000)
    page.fill("input[name=email]", email)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{url}/**", timeout=30_000)
    page.get_by_text(f"Signed in as {email}").wait_for(timeout=30_000)
    wait_for_app(page)


def assert_no_exception(page) -> None:
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()
