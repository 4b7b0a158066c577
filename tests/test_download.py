"""Downloading against a loopback HTTP server that serves archives built from the real sample."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pandas as pd
import pytest
from torchvision.datasets import OxfordIIITPet

import core.download as download_module
from core.dataset import open_dataset, summarize
from core.download import download, official_resources
from core.errors import PetSegError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ARCHIVES = ("images.tar.gz", "annotations.tar.gz")


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture(scope="module")
def archives(sample_root, tmp_path_factory) -> dict[str, bytes]:
    """images.tar.gz and annotations.tar.gz laid out like the official ones, from the real sample."""
    folder = tmp_path_factory.mktemp("archives")
    built = {}
    for name in ("images", "annotations"):
        path = folder / f"{name}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            tar.add(sample_root / name, arcname=name)
        built[f"{name}.tar.gz"] = path.read_bytes()
    return built


class _Server:
    """A threaded http.server on 127.0.0.1 serving ``folder``, remembering which paths were fetched."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.fetched: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.fetched.append(self.path.lstrip("/"))
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=folder))
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # clients hanging up early are fine
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def publish(self, name: str, data: bytes, md5: str | None = "auto") -> None:
        (self.folder / name).write_bytes(data)
        if md5 is not None:
            (self.folder / f"{name}.md5").write_text(f"{_md5(data) if md5 == 'auto' else md5}  {name}\n")

    def count(self, name: str) -> int:
        return self.fetched.count(name)


@pytest.fixture
def server(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    running = _Server(folder)
    yield running
    running.httpd.shutdown()
    running.httpd.server_close()


def _publish_good(server: _Server, archives: dict[str, bytes]) -> None:
    for name in ARCHIVES:
        server.publish(name, archives[name])


def _same_tree(a: Path, b: Path) -> bool:
    files_a = {p.relative_to(a): p.read_bytes() for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b): p.read_bytes() for p in b.rglob("*") if p.is_file()}
    return files_a == files_b


def test_good_archives_give_a_dataset_identical_to_the_sample(server, archives, sample_root, tmp_path, workspace):
    _publish_good(server, archives)
    root = tmp_path / "data"
    download(root, base_url=server.url)

    assert sorted(p.name for p in root.iterdir()) == ["annotations", "images"]  # .download/ is gone
    assert _same_tree(root / "images", sample_root / "images")
    assert _same_tree(root / "annotations", sample_root / "annotations")
    ours, real = open_dataset(root, workspace), open_dataset(sample_root, tmp_path / "ws2")
    assert summarize(ours) == summarize(real)
    pd.testing.assert_frame_equal(ours.table, real.table)

    before = list(server.fetched)
    download(root, base_url=server.url)  # already complete: nothing is fetched again
    assert server.fetched == before


def test_corrupted_archive_is_refused_and_nothing_looks_like_a_dataset(server, archives, tmp_path, workspace):
    _publish_good(server, archives)
    good = archives["annotations.tar.gz"]
    corrupted = bytearray(good)
    corrupted[len(corrupted) // 2] ^= 0xFF
    server.publish("annotations.tar.gz", bytes(corrupted), md5=_md5(good))  # the mirror's checksum is the good one
    root = tmp_path / "data"

    with pytest.raises(PetSegError, match="annotations.tar.gz .*failed its md5 check.*run the command again"):
        download(root, base_url=server.url)
    assert not (root / "images").exists() and not (root / "annotations").exists()
    assert not (root / ".download" / "annotations.tar.gz").exists()  # the bad file is not kept
    with pytest.raises(PetSegError):
        open_dataset(root, workspace)

    server.publish("annotations.tar.gz", good)  # the mirror is fixed
    fetched_images = server.count("images.tar.gz")
    download(root, base_url=server.url)
    ds = open_dataset(root, workspace)
    assert len(ds) == 20 and ds.problems == []
    assert server.count("images.tar.gz") == fetched_images  # verified by the first run: not fetched again


def test_archive_that_matches_its_md5_but_does_not_unpack(server, archives, tmp_path):
    _publish_good(server, archives)
    server.publish("annotations.tar.gz", archives["annotations.tar.gz"][:4000])  # md5 of the truncated bytes
    root = tmp_path / "data"
    with pytest.raises(PetSegError, match="cannot be unpacked"):
        download(root, base_url=server.url)
    assert not (root / "images").exists() and not (root / "annotations").exists()
    assert not (root / ".download" / "staging").exists()


def test_archive_members_cannot_escape_the_dataset_folder(server, archives, tmp_path):
    _publish_good(server, archives)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        payload = b"owned"
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    server.publish("images.tar.gz", buffer.getvalue())
    root = tmp_path / "deep" / "data"
    with pytest.raises(PetSegError, match="cannot be unpacked"):
        download(root, base_url=server.url)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (root / "images").exists()


def test_interrupted_move_is_refused_by_the_reader_and_finished_by_a_rerun(
    server, archives, tmp_path, workspace, monkeypatch
):
    _publish_good(server, archives)
    root = tmp_path / "data"
    real_replace = download_module.os.replace
    moves = []

    def crash_on_second_move(src, dst):
        moves.append(dst)
        if len(moves) == 2:
            raise KeyboardInterrupt  # the process dies between moving annotations/ and images/
        real_replace(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(download_module.os, "replace", crash_on_second_move)
        with pytest.raises(KeyboardInterrupt):
            download(root, base_url=server.url)
    assert (root / "annotations").is_dir() and not (root / "images").exists()
    with pytest.raises(PetSegError, match="did not finish"):
        open_dataset(root, workspace)

    fetched = len(server.fetched)
    download(root, base_url=server.url)
    assert len(open_dataset(root, workspace)) == 20
    assert [f for f in server.fetched[fetched:] if f.endswith(".tar.gz")] == []  # archives reused


def test_unreachable_server_gives_a_clear_error(tmp_path):
    with pytest.raises(PetSegError, match="cannot fetch http://127.0.0.1:9/images.tar.gz.*run the command again"):
        download(tmp_path / "data", base_url="http://127.0.0.1:9/")
    assert not (tmp_path / "data" / "images").exists()


def test_mirror_without_md5_files_is_checked_against_the_official_md5(server, archives, tmp_path):
    for name in ARCHIVES:
        server.publish(name, archives[name], md5=None)
    with pytest.raises(PetSegError, match=r"expected 5c4f3ee8e5d25df40f4fd59a7f44e54c.*images.tar.gz.md5"):
        download(tmp_path / "data", base_url=server.url)
    md5s = {name: _md5(archives[name]) for name in ARCHIVES}
    download(tmp_path / "data", base_url=server.url, md5s=md5s)
    assert (tmp_path / "data" / "annotations" / "list.txt").is_file()


def test_progress_callback_reports_bytes_per_archive(server, archives, tmp_path):
    _publish_good(server, archives)
    calls = []
    download(tmp_path / "data", base_url=server.url, progress=lambda *call: calls.append(call))
    for name in ARCHIVES:
        done, total, _ = [c for c in calls if c[2] == name][-1]
        assert done == total == len(archives[name])


def test_existing_foreign_data_is_never_overwritten(server, archives, tmp_path):
    _publish_good(server, archives)
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "images" / "mine.jpg").write_bytes(b"precious")
    with pytest.raises(PetSegError, match="already holds"):
        download(root, base_url=server.url)
    assert (root / "images" / "mine.jpg").read_bytes() == b"precious"


def test_official_source_is_torchvisions_urls_and_checksums():
    assert official_resources() == tuple(OxfordIIITPet._RESOURCES)
    assert download_module._resources(None, None) == list(OxfordIIITPet._RESOURCES)
    with pytest.raises(PetSegError, match="base-url"):
        download_module._resources("ftp://example.org/", None)


def test_cli_download_reports_success_and_failure(server, archives, tmp_path):
    server.publish("images.tar.gz", archives["images.tar.gz"], md5="0" * 32)
    server.publish("annotations.tar.gz", archives["annotations.tar.gz"])
    command = [sys.executable, "-m", "core", "download", "--data", str(tmp_path / "data"), "--base-url", server.url]
    failed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith("error: images.tar.gz from http://127.0.0.1")
    assert "Traceback" not in failed.stderr

    server.publish("images.tar.gz", archives["images.tar.gz"])
    ok = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "dataset ready at" in ok.stdout
    shutil.rmtree(tmp_path / "data")
