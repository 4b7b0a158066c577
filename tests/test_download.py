"""Downloading against a loopback HTTP server that serves archives built from the real sample.

These archives are not the official ones, so every download here passes their md5s explicitly (``md5s=``,
``--md5 NAME=HEX``): what a user with a private mirror of a modified archive does. A checksum served by the
mirror itself is never trusted."""

from __future__ import annotations

import functools
import gzip
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


@pytest.fixture(scope="module")
def md5s(archives) -> dict[str, str]:
    return {name: _md5(data) for name, data in archives.items()}


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

    def publish(self, name: str, data: bytes, md5: str | None = None) -> None:
        """Serve ``data`` as ``name``, and ``md5`` (md5sum format) as ``name.md5`` beside it when given."""
        (self.folder / name).write_bytes(data)
        if md5 is not None:
            (self.folder / f"{name}.md5").write_text(f"{md5}  {name}\n")

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


def test_good_archives_give_a_dataset_identical_to_the_sample(
    server, archives, md5s, sample_root, tmp_path, workspace
):
    _publish_good(server, archives)
    root = tmp_path / "data"
    download(root, base_url=server.url, md5s=md5s)

    assert sorted(p.name for p in root.iterdir()) == ["annotations", "images"]  # .download/ is gone
    assert _same_tree(root / "images", sample_root / "images")
    assert _same_tree(root / "annotations", sample_root / "annotations")
    ours, real = open_dataset(root, workspace), open_dataset(sample_root, tmp_path / "ws2")
    assert summarize(ours) == summarize(real)
    pd.testing.assert_frame_equal(ours.table, real.table)

    before = list(server.fetched)
    download(root, base_url=server.url, md5s=md5s)  # already complete: nothing is fetched again
    assert server.fetched == before


def test_corrupted_archive_is_refused_and_nothing_looks_like_a_dataset(server, archives, md5s, tmp_path, workspace):
    _publish_good(server, archives)
    corrupted = bytearray(archives["annotations.tar.gz"])
    corrupted[len(corrupted) // 2] ^= 0xFF
    server.publish("annotations.tar.gz", bytes(corrupted))  # the md5 passed is the good one's
    root = tmp_path / "data"

    with pytest.raises(PetSegError, match="annotations.tar.gz .*failed its md5 check.*run the command again"):
        download(root, base_url=server.url, md5s=md5s)
    assert not (root / "images").exists() and not (root / "annotations").exists()
    assert not (root / ".download" / "annotations.tar.gz").exists()  # the bad file is not kept
    with pytest.raises(PetSegError):
        open_dataset(root, workspace)

    server.publish("annotations.tar.gz", archives["annotations.tar.gz"])  # the mirror is fixed
    fetched_images = server.count("images.tar.gz")
    download(root, base_url=server.url, md5s=md5s)
    ds = open_dataset(root, workspace)
    assert len(ds) == 20 and ds.problems == []
    assert server.count("images.tar.gz") == fetched_images  # verified by the first run: not fetched again


def test_archive_that_matches_its_md5_but_does_not_unpack(server, archives, md5s, tmp_path):
    _publish_good(server, archives)
    truncated = archives["annotations.tar.gz"][:4000]
    server.publish("annotations.tar.gz", truncated)
    root = tmp_path / "data"
    with pytest.raises(PetSegError, match="cannot be unpacked"):
        download(root, base_url=server.url, md5s={**md5s, "annotations.tar.gz": _md5(truncated)})
    assert not (root / "images").exists() and not (root / "annotations").exists()
    assert not (root / ".download" / "staging").exists()


def test_archive_members_cannot_escape_the_dataset_folder(server, archives, md5s, tmp_path):
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
        download(root, base_url=server.url, md5s={**md5s, "images.tar.gz": _md5(buffer.getvalue())})
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (root / "images").exists()


def test_interrupted_move_is_refused_by_the_reader_and_finished_by_a_rerun(
    server, archives, md5s, tmp_path, workspace, monkeypatch
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
            download(root, base_url=server.url, md5s=md5s)
    assert (root / "annotations").is_dir() and not (root / "images").exists()
    with pytest.raises(PetSegError, match="did not finish"):
        open_dataset(root, workspace)

    fetched = len(server.fetched)
    download(root, base_url=server.url, md5s=md5s)
    assert len(open_dataset(root, workspace)) == 20
    assert [f for f in server.fetched[fetched:] if f.endswith(".tar.gz")] == []  # archives reused


def test_unreachable_server_gives_a_clear_error(tmp_path):
    with pytest.raises(PetSegError, match="cannot fetch http://127.0.0.1:9/images.tar.gz.*run the command again"):
        download(tmp_path / "data", base_url="http://127.0.0.1:9/")
    assert not (tmp_path / "data" / "images").exists()


def test_mirror_is_checked_against_the_official_md5_unless_one_is_passed(server, archives, md5s, tmp_path):
    _publish_good(server, archives)
    with pytest.raises(PetSegError, match=r"expected 5c4f3ee8e5d25df40f4fd59a7f44e54c.*--md5 images.tar.gz="):
        download(tmp_path / "data", base_url=server.url)
    download(tmp_path / "data", base_url=server.url, md5s=md5s)
    assert (tmp_path / "data" / "annotations" / "list.txt").is_file()


def test_a_checksum_served_by_the_mirror_itself_is_not_trusted(server, archives, tmp_path):
    """A mirror that serves a modified archive with a matching .md5 beside it proves nothing about the archive."""
    for name in ARCHIVES:
        server.publish(name, archives[name], md5=_md5(archives[name]))
    with pytest.raises(PetSegError, match="images.tar.gz .*failed its md5 check .*expected 5c4f3ee8"):
        download(tmp_path / "data", base_url=server.url)
    assert not (tmp_path / "data" / "images").exists()
    assert not [f for f in server.fetched if f.endswith(".md5")]


def test_md5_overrides_are_validated(tmp_path):
    good = "0" * 32
    with pytest.raises(PetSegError, match="not 32 hex digits"):
        download(tmp_path / "d", base_url="http://127.0.0.1:9/", md5s={"images.tar.gz": "xyz"})
    with pytest.raises(PetSegError, match="'other.tar.gz' is not one of images.tar.gz, annotations.tar.gz"):
        download(tmp_path / "d", base_url="http://127.0.0.1:9/", md5s={"other.tar.gz": good})
    with pytest.raises(PetSegError, match="only with --base-url"):
        download(tmp_path / "d", md5s={"images.tar.gz": good})
    assert download_module.parse_md5_options([f"images.tar.gz={good.upper()}"]) == {"images.tar.gz": good}
    with pytest.raises(PetSegError, match="NAME=HEX"):
        download_module.parse_md5_options(["images.tar.gz"])


def test_progress_callback_reports_bytes_per_archive(server, archives, md5s, tmp_path):
    _publish_good(server, archives)
    calls = []
    download(tmp_path / "data", base_url=server.url, md5s=md5s, progress=lambda *call: calls.append(call))
    for name in ARCHIVES:
        done, total, _ = [c for c in calls if c[2] == name][-1]
        assert done == total == len(archives[name])


def test_existing_foreign_data_is_never_overwritten(server, archives, md5s, tmp_path):
    _publish_good(server, archives)
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "images" / "mine.jpg").write_bytes(b"precious")
    with pytest.raises(PetSegError, match="already holds"):
        download(root, base_url=server.url, md5s=md5s)
    assert (root / "images" / "mine.jpg").read_bytes() == b"precious"


def test_official_source_is_torchvisions_urls_and_checksums():
    assert official_resources() == tuple(OxfordIIITPet._RESOURCES)
    assert download_module._resources(None, None) == list(OxfordIIITPet._RESOURCES)
    with pytest.raises(PetSegError, match="base-url"):
        download_module._resources("ftp://example.org/", None)


def test_cli_download_reports_success_and_failure(server, archives, md5s, tmp_path):
    _publish_good(server, archives)
    command = [sys.executable, "-m", "core", "download", "--data", str(tmp_path / "data"), "--base-url", server.url,
               "--md5", f"annotations.tar.gz={md5s['annotations.tar.gz']}"]
    failed = subprocess.run(command + ["--md5", "images.tar.gz=" + "0" * 32], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith("error: images.tar.gz from http://127.0.0.1")
    assert "Traceback" not in failed.stderr

    ok = subprocess.run(command + ["--md5", f"images.tar.gz={md5s['images.tar.gz']}"], cwd=PROJECT_ROOT,
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "dataset ready at" in ok.stdout
    shutil.rmtree(tmp_path / "data")


# --- unpacking limits ---------------------------------------------------------------------------------------------


def _tar_gz(members: list[tuple[str, int]]) -> bytes:
    """A .tar.gz of zero-filled files: tiny on the wire, ``sum(sizes)`` bytes once unpacked.

    Built as a multi-member gzip stream (valid gzip, read by tarfile like any other) so the zeros of each
    size are deflated once instead of per file: a 1 GiB bomb costs milliseconds to make.
    """
    deflated: dict[int, bytes] = {}
    parts = []
    for name, size in members:
        assert size % tarfile.BLOCKSIZE == 0
        info = tarfile.TarInfo(name)
        info.size = size
        parts.append(gzip.compress(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")))
        if size not in deflated:
            deflated[size] = gzip.compress(bytes(size), 9)
        parts.append(deflated[size])
    parts.append(gzip.compress(bytes(2 * tarfile.BLOCKSIZE)))  # end-of-archive marker
    return b"".join(parts)


def test_an_archive_that_expands_far_beyond_its_size_is_refused_before_filling_the_disk(
    server, archives, md5s, tmp_path
):
    mib = 1024 * 1024
    bomb = _tar_gz([(f"images/Abyssinian_{i}.jpg", 4 * mib) for i in range(1, 257)])  # 1 GiB unpacked
    assert len(bomb) < 3 * mib
    _publish_good(server, archives)
    server.publish("images.tar.gz", bomb)
    root = tmp_path / "data"
    written = []
    real_open = download_module.tarfile.TarFile.makefile

    def counting(self, tarinfo, targetpath):
        written.append(tarinfo.size)
        return real_open(self, tarinfo, targetpath)

    download_module.tarfile.TarFile.makefile = counting
    try:
        with pytest.raises(PetSegError, match=r"images.tar.gz would unpack to more than 64 MiB .*refused"):
            download(root, base_url=server.url, md5s={**md5s, "images.tar.gz": _md5(bomb)})
    finally:
        download_module.tarfile.TarFile.makefile = real_open
    assert sum(written) <= 64 * mib  # stopped at the budget, not after the whole GiB
    assert not (root / ".download" / "staging").exists() and not (root / ".download" / "images.tar.gz").exists()
    assert not (root / "images").exists()


def test_the_budget_follows_the_official_sizes_and_each_member_is_checked(monkeypatch):
    mib = 1024 * 1024
    official_images = download_module._Budget("images.tar.gz", 791_918_971)
    assert official_images.limit == download_module.EXTRACT_CAP["images.tar.gz"] >= 2 * 800 * 10**6
    assert download_module._Budget("annotations.tar.gz", 19_173_078).limit == 256 * mib
    assert download_module._Budget("images.tar.gz", 3 * mib).limit == 64 * mib  # floor for small archives
    with pytest.raises(download_module.ArchiveTooLarge, match="one file .*Abyssinian_1.jpg.* more than"):
        budget = download_module._Budget("images.tar.gz", 10**9)
        info = tarfile.TarInfo("images/Abyssinian_1.jpg")
        info.size = download_module.MAX_MEMBER_BYTES + 1
        budget.check(info, "/tmp/x")


def test_unpacking_passes_the_data_filter_per_call_and_leaves_tarfile_alone(server, archives, md5s, tmp_path,
                                                                             monkeypatch):
    """Two downloads in one server must not race on a class-wide filter: nothing global is swapped."""
    seen = []
    real = tarfile.TarFile.extractall

    def spy(self, path=".", members=None, *, numeric_owner=False, filter=None):
        seen.append((tarfile.TarFile.extraction_filter, filter))
        return real(self, path, members, numeric_owner=numeric_owner, filter=filter)

    monkeypatch.setattr(tarfile.TarFile, "extractall", spy)
    before = tarfile.TarFile.extraction_filter
    _publish_good(server, archives)
    download(tmp_path / "data", base_url=server.url, md5s=md5s)
    assert len(seen) == 2
    assert all(class_filter is before and call_filter is not None for class_filter, call_filter in seen)
