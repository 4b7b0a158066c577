"""An address others can reach, without sign-in: refused before start (``python -m dashboard.serve``, what
``make run`` uses) and, for a plain ``streamlit run``, by the frame on every page. Real servers on this machine's
own non-loopback address.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dashboard.auth import ALLOW_OPEN_ENV
from tests.browser import PROJECT_ROOT, assert_no_exception, chromium_page, free_port, streamlit_server, wait_for_app

AUTH = """[auth]
redirect_uri = "http://{address}:{port}/oauth2callback"
cookie_secret = "{secret}"
client_id = "petseg"
client_secret = "not-used-before-someone-signs-in"
server_metadata_url = "https://accounts.example.org/.well-known/openid-configuration"
"""


@pytest.fixture(scope="module")
def open_address() -> str:
    """An address of this machine that is not loopback (the one its default route leaves from)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.254", 9))  # UDP connect sends nothing; it only picks the outgoing interface
            address = sock.getsockname()[0]
        except OSError:
            pytest.skip("this machine has no non-loopback IPv4 address")
    if address.startswith("127."):
        pytest.skip("this machine has no non-loopback IPv4 address")
    return address


def _serve(address: str | None, port: int, secrets_file: Path, tmp_path: Path, **env: str) -> subprocess.Popen:
    """``python -m dashboard.serve`` on ``address`` (None: the address comes from ``env``, not a flag)."""
    environ = {k: v for k, v in os.environ.items() if k not in (ALLOW_OPEN_ENV, "STREAMLIT_SERVER_ADDRESS")}
    environ.update(PETSEG_DATA=str(tmp_path / "data"), PETSEG_HOME=str(tmp_path / "workspace"), **env)
    where = [] if address is None else ["--server.address", address]
    return subprocess.Popen(
        [sys.executable, "-m", "dashboard.serve", *where, "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
         "--secrets.files", str(secrets_file)],
        cwd=PROJECT_ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                return response.status == 200
        except OSError:
            time.sleep(0.2)
    return False


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("given_as", ["flag", "environment"])
def test_serve_refuses_an_open_address_without_sign_in_before_starting(open_address, tmp_path, given_as):
    port = free_port()
    if given_as == "flag":
        proc = _serve(open_address, port, tmp_path / "no-secrets.toml", tmp_path)
    else:
        proc = _serve(None, port, tmp_path / "no-secrets.toml", tmp_path, STREAMLIT_SERVER_ADDRESS=open_address)
    try:
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            _stop(proc)
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: PetSeg refuses to serve on {open_address} without sign-in: ")
    assert "[auth]" in lines[0] and ".streamlit/secrets.toml" in lines[0]
    with socket.socket() as sock:  # nothing ever listened
        assert sock.connect_ex((open_address, port)) != 0


def test_serve_names_what_an_incomplete_auth_section_lacks(tmp_path):
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(AUTH.format(address="127.0.0.1", port=8501, secret="s" * 40).replace(
        'client_secret = "not-used-before-someone-signs-in"\n', ""))
    proc = _serve("127.0.0.1", free_port(), secrets_file, tmp_path)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().splitlines() == ["error: sign-in is misconfigured: [auth] lacks client_secret (README: "
                                        "'Working as a team: signing in')"]


@pytest.mark.parametrize("how", ["auth configured", "escape hatch"])
def test_serve_starts_on_an_open_address_with_sign_in_or_the_escape_hatch(open_address, tmp_path, how):
    port = free_port()
    secrets_file = tmp_path / "secrets.toml"
    if how == "auth configured":
        secrets_file.write_text(AUTH.format(address=open_address, port=port, secret="s" * 40))
        proc = _serve(open_address, port, secrets_file, tmp_path)
    else:
        proc = _serve(open_address, port, secrets_file, tmp_path, **{ALLOW_OPEN_ENV: "1"})
    try:
        assert _healthy(f"http://{open_address}:{port}", proc), proc.stderr.read() if proc.poll() is not None else ""
    finally:
        _stop(proc)


@pytest.mark.browser
def test_plain_streamlit_run_on_an_open_address_serves_only_the_refusal(open_address, sample_root, workspace,
                                                                        tmp_path, monkeypatch):
    monkeypatch.delenv(ALLOW_OPEN_ENV, raising=False)
    log = tmp_path / "server.log"
    flags = ["--secrets.files", str(tmp_path / "no-secrets.toml")]
    with streamlit_server(sample_root, workspace, log, address=open_address, args=flags) as url, \
            chromium_page() as page:
        for path in ("/annotate?image=Abyssinian_1", "/", "/export"):
            page.goto(f"{url}{path}")
            alert = page.get_by_text(f"PetSeg refuses to serve on {open_address} without sign-in")
            alert.wait_for(timeout=30_000)
            wait_for_app(page)
            assert_no_exception(page)
            assert page.locator(".petseg-editor").count() == 0
            assert page.locator('[data-testid="stSidebarNav"]').count() == 0
            assert page.get_by_text("Dataset").count() == 0  # the sidebar never ran
        text = log.read_text()
    assert text.count(f"error: PetSeg refuses to serve on {open_address} without sign-in") == 1
    assert not list(workspace.iterdir()), "nothing may be written for a refused visitor"
