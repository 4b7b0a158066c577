"""core.corrections + core.ledger + core.store: versions, conflicts, history, revert, soft delete, import, hostile
input, schema upgrades. Every test runs on both engines (the ``engine`` fixture: SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
from _tiny_dataset import copy_sample, ellipse_pet, make_tiny_dataset

from core import cli, corrections, groundtruth, ledger, store
from core.config import Settings
from core.corrections import import_folder, revert, save, soft_delete
from core.dataset import load_trimap, open_dataset
from core.errors import ImageUnreadable, PetSegError, UnknownImage
from core.ledger import ConflictError, history, latest, latest_table, latest_versions, load_mask
from core.masks import BACKGROUND, BORDER, PET, binary_to_trimap
from core.metrics import pet_iou
from core.store.migrate import current_revision, head, upgrade
from core.store.schema import corrections as corrections_table
from core.store.schema import masks as masks_table

ID = "Abyssinian_1"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("engine")




def _mask(ds, image_id: str = ID, shift: int = 2) -> np.ndarray:
    height, width = int(ds.table.loc[image_id, "height"]), int(ds.table.loc[image_id, "width"])
    return binary_to_trimap(ellipse_pet((height, width), shift=shift), half_width=1)


def _rows(settings: Settings) -> list[sa.Row]:
    with store.reading(settings) as conn:
        return conn.execute(sa.select(corrections_table).order_by("image_id", "version")).all()


def _mask_files(settings: Settings) -> list[str]:
    """The sha256 of every mask the store holds (the name is from when they were files)."""
    with store.reading(settings) as conn:
        return [sha for (sha,) in conn.execute(sa.select(masks_table.c.sha256).order_by("sha256"))]


def _stored_png(settings: Settings, digest: str) -> bytes | None:
    with store.reading(settings) as conn:
        return conn.execute(sa.select(masks_table.c.png).where(masks_table.c.sha256 == digest)).scalar()


def _execute(settings: Settings, statement) -> None:
    with store.writing(settings) as conn:
        conn.execute(statement)


# --- database ------------------------------------------------------------------------------------------


def test_the_store_is_at_the_newest_schema_with_the_engine_settings_it_needs(settings: Settings, engine: str):
    eng = store.engine(settings)
    assert current_revision(eng) == head()
    assert {"corrections", "reviews", "masks", "alembic_version"} <= set(sa.inspect(eng).get_table_names())
    if engine == "sqlite":
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert settings.db_path.is_file()
    else:
        assert not settings.db_path.exists()  # a team store leaves no SQLite file behind
    assert upgrade(eng) == head()  # idempotent


def test_database_from_a_newer_petseg_or_damaged_is_refused_with_a_message(settings: Settings, engine: str):
    store.engine(settings)
    _execute(settings, sa.text("UPDATE alembic_version SET version_num = '9999'"))
    store.dispose_all()
    with pytest.raises(PetSegError, match="does not know"):
        store.engine(settings)
    if engine == "sqlite":
        settings.db_path.unlink()
        for extra in ("-wal", "-shm"):
            Path(str(settings.db_path) + extra).unlink(missing_ok=True)
        settings.db_path.write_bytes(b"this is not a database at all" * 100)
        with pytest.raises(PetSegError, match="unreadable .* move it aside"):
            store.engine(settings)


def test_processes_starting_together_upgrade_once(settings: Settings):
    """Four processes open a fresh store at the same moment: one upgrades, the others wait and find it done."""
    script = ("import sys; from core.config import Settings; from core import store, ledger; "
              "s = Settings.resolve(data=sys.argv[1], workspace=sys.argv[2]); print(ledger.latest_versions(s))")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(settings.data), str(settings.workspace)],
                              cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "{}"
    assert current_revision(store.engine(settings)) == head()


def test_a_workspace_from_before_the_upgrade_keeps_every_version_and_mask(settings: Settings, ds, engine: str):
    """A ``PRAGMA user_version`` 1 ledger with its masks/ folder is stamped, upgraded in place, nothing lost."""
    if engine != "sqlite":
        pytest.skip("old workspaces are SQLite files; PostgreSQL receives them through `db copy`")
    masks_v1 = [_mask(ds, shift=1), _mask(ds, shift=2)]
    _legacy_workspace(settings, [(ID, 1, masks_v1[0]), (ID, 2, masks_v1[1]), ("beagle_1", 1, masks_v1[0])])
    assert [c.version for c in history(settings, ID)] == [1, 2]
    assert np.array_equal(groundtruth.current(settings, ds, ID)[0], masks_v1[1])
    assert np.array_equal(load_mask(settings, history(settings, ID)[0]), masks_v1[0])
    assert ledger.check_store(settings).ok and len(_mask_files(settings)) == 2
    assert current_revision(store.engine(settings)) == head()
    with sqlite3.connect(settings.db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2  # an old PetSeg now refuses it
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):  # the copied table kept its constraints
            conn.execute("UPDATE corrections SET version = 0")
    assert save(settings, ds, ID, _mask(ds, shift=3), base_version=2, source="correction").version == 3
    # the folder is now redundant: gc removes exactly the files the database holds
    from core.cleanup import collect

    report = collect(settings, dry_run=True)
    assert len(report.masks) == 2 and all(p.startswith("masks/") for p in report.masks)
    collect(settings)
    assert not settings.masks_dir.exists()
    assert np.array_equal(groundtruth.current(settings, ds, ID)[0], _mask(ds, shift=3))


OLD_SCHEMA = """
CREATE TABLE corrections (
    id INTEGER PRIMARY KEY, image_id TEXT NOT NULL, version INTEGER NOT NULL CHECK (version >= 1),
    parent_version INTEGER,
    source TEXT NOT NULL CHECK (source IN ('gt', 'prediction', 'correction', 'import', 'revert')),
    author TEXT NOT NULL, note TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL, sha256 TEXT NOT NULL,
    path TEXT NOT NULL, height INTEGER NOT NULL, width INTEGER NOT NULL, iou_gt REAL,
    deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)), deleted_at TEXT, UNIQUE (image_id, version));
CREATE INDEX corrections_sha256 ON corrections (sha256);
CREATE TABLE reviews (
    image_id TEXT PRIMARY KEY,
    tag TEXT CHECK (tag IS NULL OR tag IN ('model_error', 'label_error', 'ambiguous', 'fine')),
    note TEXT NOT NULL DEFAULT '', author TEXT NOT NULL, updated_at TEXT NOT NULL);
INSERT INTO reviews VALUES ('beagle_1', 'label_error', 'ear', 'ana', '2026-01-01T00:00:00.000+00:00');
PRAGMA user_version = 1;
"""


def _legacy_workspace(settings: Settings, versions: list[tuple[str, int, np.ndarray]]) -> None:
    """The workspace PetSeg wrote before the store moved to SQLAlchemy (schema version 1, PNGs in masks/)."""
    from core.masks import encode_png

    conn = sqlite3.connect(settings.db_path)
    conn.executescript(OLD_SCHEMA)
    for image_id, version, mask in versions:
        data = encode_png(mask)
        digest = hashlib.sha256(data).hexdigest()
        rel = f"masks/{digest[:2]}/{digest}.png"
        (settings.workspace / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings.workspace / rel).write_bytes(data)
        conn.execute("INSERT INTO corrections (image_id, version, parent_version, source, author, created_at, sha256,"
                     " path, height, width) VALUES (?, ?, ?, 'gt', 'ana', '2026-01-01', ?, ?, ?, ?)",
                     (image_id, version, version - 1 or None, digest, rel, *mask.shape))
    conn.commit()
    conn.close()


# --- saving and reading --------------------------------------------------------------------------------


def test_save_creates_numbered_versions_with_their_files(settings: Settings, ds):
    first = save(settings, ds, ID, _mask(ds, shift=1), base_version=None, source="gt", note="ear")
    second = save(settings, ds, ID, _mask(ds, shift=2), base_version=1, source="correction", author="Ana")
    assert (first.version, first.parent_version, first.source, first.note) == (1, None, "gt", "ear")
    assert (second.version, second.parent_version, second.source, second.author) == (2, 1, "correction", "Ana")
    assert first.author  # the OS user by default
    for correction in (first, second):
        assert hashlib.sha256(_stored_png(settings, correction.sha256)).hexdigest() == correction.sha256
    assert not settings.masks_dir.exists()  # the bytes are in the database, for every app server alike
    assert np.array_equal(load_mask(settings, second), _mask(ds, shift=2))
    assert [c.version for c in history(settings, ID)] == [1, 2]
    assert latest(settings, ID) == second
    assert latest_versions(settings) == {ID: 2}
    table = latest_table(settings)
    assert table.loc[ID, "version"] == 2 and table.loc[ID, "versions"] == 2
    official = load_trimap(ds, ID)
    assert first.iou_gt == pytest.approx(pet_iou(_mask(ds, shift=1), official))


def test_identical_masks_share_one_file(settings: Settings, ds):
    save(settings, ds, ID, _mask(ds), base_version=None, source="gt")
    save(settings, ds, ID, _mask(ds, shift=3), base_version=1, source="correction")
    third = save(settings, ds, ID, _mask(ds), base_version=2, source="correction")
    assert third.version == 3
    assert len(_mask_files(settings)) == 2


def test_the_ground_truth_is_the_latest_correction_else_the_official_trimap(settings: Settings, ds):
    official = load_trimap(ds, ID)
    mask, version = groundtruth.current(settings, ds, ID)
    assert version is None and np.array_equal(mask, official)
    save(settings, ds, ID, _mask(ds, shift=1), base_version=None, source="gt")
    save(settings, ds, ID, _mask(ds, shift=2), base_version=1, source="correction")
    mask, version = groundtruth.current(settings, ds, ID)
    assert version == 2 and np.array_equal(mask, _mask(ds, shift=2))
    other, other_version = groundtruth.current(settings, ds, "beagle_1")
    assert other_version is None and np.array_equal(other, load_trimap(ds, "beagle_1"))


def test_conflict_when_another_version_landed_and_save_on_top_keeps_both(settings: Settings, ds):
    save(settings, ds, ID, _mask(ds, shift=1), base_version=None, source="gt", author="Ana")
    with pytest.raises(ConflictError) as caught:
        save(settings, ds, ID, _mask(ds, shift=2), base_version=None, source="gt", author="Ben")
    error = caught.value
    assert isinstance(error, PetSegError)
    assert error.current_version == 1 and error.base_version is None
    assert "v1 was saved meanwhile by Ana" in str(error) and "nothing was overwritten" in str(error)
    assert [c.author for c in history(settings, ID)] == ["Ana"]
    assert len(_mask_files(settings)) == 1  # the refused mask left no file behind
    on_top = save(settings, ds, ID, _mask(ds, shift=2), base_version=error.current_version, source="correction")
    assert on_top.version == 2
    with pytest.raises(ConflictError, match="started from v1 but v2 was saved"):
        save(settings, ds, ID, _mask(ds, shift=3), base_version=1, source="correction")


def test_soft_delete_hides_a_version_and_keeps_its_row_and_file(settings: Settings, ds):
    save(settings, ds, ID, _mask(ds, shift=1), base_version=None, source="gt")
    v2 = save(settings, ds, ID, _mask(ds, shift=2), base_version=1, source="correction")
    deleted = soft_delete(settings, ds, ID, 2)
    assert deleted.deleted and _stored_png(settings, v2.sha256) is not None
    assert [c.version for c in history(settings, ID)] == [1]
    assert [(c.version, c.deleted) for c in history(settings, ID, include_deleted=True)] == [(1, False), (2, True)]
    mask, version = groundtruth.current(settings, ds, ID)
    assert version == 1 and np.array_equal(mask, _mask(ds, shift=1))
    assert soft_delete(settings, ds, ID, 2).deleted  # deleting twice is harmless
    # the editor loaded v1 (the latest visible); a save from there is numbered after the deleted v2
    v3 = save(settings, ds, ID, _mask(ds, shift=3), base_version=1, source="correction")
    assert (v3.version, v3.parent_version) == (3, 1)
    soft_delete(settings, ds, ID, 3)
    soft_delete(settings, ds, ID, 1)
    mask, version = groundtruth.current(settings, ds, ID)
    assert version is None and np.array_equal(mask, load_trimap(ds, ID))
    assert latest_versions(settings) == {}
    with pytest.raises(PetSegError, match="has no version 9"):
        soft_delete(settings, ds, ID, 9)


def test_revert_creates_a_new_version_with_the_old_content(settings: Settings, ds):
    v1 = save(settings, ds, ID, _mask(ds, shift=1), base_version=None, source="gt")
    save(settings, ds, ID, _mask(ds, shift=2), base_version=1, source="correction")
    soft_delete(settings, ds, ID, 1)
    reverted = revert(settings, ds, ID, 1, author="Ana")
    assert (reverted.version, reverted.parent_version, reverted.source) == (3, 1, "revert")
    assert reverted.sha256 == v1.sha256 and reverted.note == "revert to v1"
    assert reverted.iou_gt == pytest.approx(v1.iou_gt)
    mask, version = groundtruth.current(settings, ds, ID)
    assert version == 3 and np.array_equal(mask, _mask(ds, shift=1))
    with pytest.raises(PetSegError, match="has no version 7"):
        revert(settings, ds, ID, 7)


def test_a_damaged_or_missing_mask_file_is_reported_not_returned(settings: Settings, ds):
    v1 = save(settings, ds, ID, _mask(ds), base_version=None, source="gt")
    data = bytearray(_stored_png(settings, v1.sha256))
    data[-20] ^= 0xFF
    _execute(settings, masks_table.update().values(png=bytes(data)))
    with pytest.raises(ImageUnreadable, match="damaged .* revert"):
        groundtruth.current(settings, ds, ID)
    assert ledger.check_store(settings).corrupt == [f"{ID} v1"]
    _execute(settings, masks_table.delete())
    assert ledger.check_store(settings).missing == [f"{ID} v1"]
    with pytest.raises(ImageUnreadable, match="missing"):
        load_mask(settings, v1)
    # saving the same content again repairs the content-addressed file
    save(settings, ds, ID, _mask(ds), base_version=1, source="correction")
    assert np.array_equal(load_mask(settings, v1), _mask(ds))


def test_a_tampered_ledger_row_reads_nothing_but_its_own_mask(settings: Settings, ds):
    save(settings, ds, ID, _mask(ds), base_version=None, source="gt")
    _execute(settings, corrections_table.update().values(sha256="../../etc/passwd"))
    with pytest.raises(ImageUnreadable, match="missing"):
        load_mask(settings, latest(settings, ID))
    with pytest.raises(ImageUnreadable, match="missing"):
        groundtruth.current(settings, ds, ID)


def test_corrections_from_another_dataset_are_not_applied_silently(tmp_path: Path, settings: Settings, ds):
    save(settings, ds, ID, _mask(ds), base_version=None, source="gt")
    other_root = make_tiny_dataset(tmp_path / "other", size=(30, 30))
    other = open_dataset(other_root, settings.workspace)
    with pytest.raises(PetSegError, match="belong to another dataset"):
        groundtruth.current(settings, other, ID)


def test_saves_from_threads_are_each_a_version_or_a_conflict(settings: Settings, ds):
    results: list[object] = []
    barrier = threading.Barrier(4)

    def worker(shift: int) -> None:
        barrier.wait()
        try:
            results.append(save(settings, ds, ID, _mask(ds, shift=shift), base_version=None, source="gt"))
        except ConflictError as exc:
            results.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    saved = [r for r in results if not isinstance(r, ConflictError)]
    assert len(saved) == 1 and len(results) == 4
    assert [c.version for c in history(settings, ID)] == [1]


# --- hostile input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_id", ["../../etc/passwd", "Abyssinian_999", "A" * 5000, "", "<b>x</b>", "beagle_1/.."])
def test_unknown_or_path_like_ids_are_refused(settings: Settings, ds, image_id: str):
    with pytest.raises(UnknownImage):
        save(settings, ds, image_id, _mask(ds), base_version=None, source="gt")
    with pytest.raises(UnknownImage):
        groundtruth.current(settings, ds, image_id)
    assert _rows(settings) == [] and _mask_files(settings) == []


def test_wrong_masks_are_refused_before_anything_is_written(settings: Settings, ds):
    good = _mask(ds)
    cases = {
        "but the image is": good[:-1],
        "dtype int32": good.astype(np.int32),
        r"values \{0\} outside": np.clip(good.astype(int) - 1, 0, 2).astype(np.uint8),
        "single-channel": np.stack([good] * 3, axis=-1),
        "numpy array": good.tolist(),
    }
    for message, mask in cases.items():
        with pytest.raises(PetSegError, match=message):
            save(settings, ds, ID, mask, base_version=None, source="gt")
    with pytest.raises(PetSegError, match="source 'paint'"):
        save(settings, ds, ID, good, base_version=None, source="paint")
    with pytest.raises(PetSegError, match="base version"):
        save(settings, ds, ID, good, base_version=0, source="gt")
    with pytest.raises(PetSegError, match="note is longer"):
        save(settings, ds, ID, good, base_version=None, source="gt", note="x" * 5000)
    with pytest.raises(PetSegError, match="author is longer"):
        save(settings, ds, ID, good, base_version=None, source="gt", author="x" * 500)
    assert _rows(settings) == [] and _mask_files(settings) == []


# --- import --------------------------------------------------------------------------------------------


def _write_png(path: Path, array: np.ndarray) -> None:
    assert cv2.imwrite(str(path), array)


def test_import_folder_versions_good_files_and_refuses_bad_ones_one_line_each(tmp_path: Path, settings: Settings, ds):
    folder = tmp_path / "fixed"
    folder.mkdir()
    trimap = _mask(ds, ID, shift=3)
    _write_png(folder / f"{ID}.png", trimap)
    binary_pet = ellipse_pet(_mask(ds, "Bengal_1").shape, shift=2)
    _write_png(folder / "Bengal_1.png", np.where(binary_pet, 255, 0).astype(np.uint8))
    _write_png(folder / "beagle_1.png", _mask(ds, "beagle_1")[:-2])  # wrong size
    _write_png(folder / "beagle_2.png", (_mask(ds, "beagle_2") * 40).astype(np.uint8))  # wrong values
    _write_png(folder / "Sphynx_7.png", trimap)  # unknown id
    (folder / "notes.txt").write_text("hello")
    (folder / "Abyssinian_2.png").write_bytes(b"not a png")
    (folder / "sub").mkdir()
    os.symlink("/etc/passwd", folder / "Abyssinian_2.PNG")
    (folder / "evil\nname.png").write_bytes(b"x")

    results = import_folder(settings, folder, author="Lab", note="batch 3", ds=ds).results
    by_name = {r.name: r for r in results}
    assert len(results) == 10
    assert by_name[f"{ID}.png"].ok and by_name[f"{ID}.png"].version == 1
    assert "imported as v1 (trimap)" in by_name[f"{ID}.png"].line()
    assert by_name["Bengal_1.png"].ok and "border band regenerated" in by_name["Bengal_1.png"].line()
    refused = {name: r.line() for name, r in by_name.items() if not r.ok}
    assert set(refused) == {
        "beagle_1.png", "beagle_2.png", "Sphynx_7.png", "notes.txt", "Abyssinian_2.png", "sub",
        "Abyssinian_2.PNG", "evil\nname.png",
    }
    assert "but the image is" in refused["beagle_1.png"]
    assert "values {40, 80, 120}" in refused["beagle_2.png"]
    assert "refused" in refused["Sphynx_7.png"]
    assert "not a .png" in refused["notes.txt"]
    assert "not a readable PNG" in refused["Abyssinian_2.png"]
    assert "folder" in refused["sub"] and "symbolic link" in refused["Abyssinian_2.PNG"]
    assert "\n" not in refused["evil\nname.png"]

    imported = latest(settings, ID)
    assert (imported.source, imported.author, imported.note) == ("import", "Lab", "batch 3")
    assert np.array_equal(groundtruth.current(settings, ds, ID)[0], trimap)
    bengal, _ = groundtruth.current(settings, ds, "Bengal_1")
    assert np.array_equal(bengal, binary_to_trimap(binary_pet))  # pet 1, background 2, regenerated border 3
    assert set(np.unique(bengal)) == {PET, BACKGROUND, BORDER}
    assert set(latest_versions(settings)) == {ID, "Bengal_1"}

    again = {r.name: r for r in import_folder(settings, folder, ds=ds).results}
    assert again[f"{ID}.png"].ok and "unchanged: identical to v1" in again[f"{ID}.png"].line()
    assert latest_versions(settings) == {ID: 1, "Bengal_1": 1}


def test_import_of_the_official_trimap_adds_no_version(tmp_path: Path, settings: Settings, ds):
    folder = tmp_path / "same"
    folder.mkdir()
    _write_png(folder / f"{ID}.png", load_trimap(ds, ID))
    (result,) = import_folder(settings, folder, ds=ds).results
    assert result.ok and "identical to the official trimap" in result.line()
    assert latest_versions(settings) == {}


def test_import_refuses_missing_or_empty_folders_and_huge_files(tmp_path: Path, settings: Settings, ds, monkeypatch):
    with pytest.raises(PetSegError, match="does not exist"):
        import_folder(settings, tmp_path / "nope", ds=ds)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PetSegError, match="is empty"):
        import_folder(settings, tmp_path / "empty", ds=ds)
    folder = tmp_path / "big"
    folder.mkdir()
    _write_png(folder / f"{ID}.png", _mask(ds))
    monkeypatch.setattr(corrections, "MAX_IMPORT_BYTES", 50)
    (result,) = import_folder(settings, folder, ds=ds).results
    assert not result.ok and "larger than" in result.message


def test_cli_corrections_import_prints_one_line_per_file(tmp_path: Path, settings: Settings, ds, capsys):
    folder = tmp_path / "cli"
    folder.mkdir()
    _write_png(folder / f"{ID}.png", _mask(ds, shift=3))
    _write_png(folder / "beagle_1.png", _mask(ds, "beagle_1")[:-1])
    argv = ["corrections", "import", "--data", str(settings.data), "--workspace", str(settings.workspace),
            "--from", str(folder), "--author", "cli-user"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{ID}.png: imported as v1") and out[1].startswith("beagle_1.png: refused:")
    assert out[2] == "1 imported, 0 unchanged, 1 refused"
    assert out[3] == "0 stored evaluation rows rescored against the imported masks"  # no run evaluated here
    assert latest(settings, ID).author == "cli-user"
    assert cli.main(argv[:-4] + ["--from", str(tmp_path / "missing")]) == 2


# --- garbage collection --------------------------------------------------------------------------------


def test_gc_removes_only_old_mask_files_the_database_holds(settings: Settings, ds):
    from core.cleanup import collect

    save(settings, ds, ID, _mask(ds, shift=1), base_version=None, source="gt")
    v2 = save(settings, ds, ID, _mask(ds, shift=2), base_version=1, source="correction")
    soft_delete(settings, ds, ID, 2)
    held = settings.masks_dir / v2.sha256[:2] / f"{v2.sha256}.png"  # as the old file store had it
    unknown = settings.masks_dir / "ab" / ("ab" + "0" * 62 + ".png")  # not in the database: never removed
    for path in (held, unknown):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"old file store")
    assert collect(settings).masks == [held.relative_to(settings.workspace).as_posix()]
    assert not held.exists() and unknown.exists()
    assert ledger.check_store(settings).ok and _stored_png(settings, v2.sha256) is not None


# --- the real sample -----------------------------------------------------------------------------------


def test_corrections_on_the_real_sample(tmp_path: Path, sample_root: Path, workspace: Path):
    root = copy_sample(sample_root, tmp_path / "sample")
    settings = Settings.resolve(data=root, workspace=workspace)
    ds = open_dataset(root, workspace)
    image_id = ds.ids()[0]
    official = load_trimap(ds, image_id)
    edited = official.copy()
    edited[: official.shape[0] // 4] = BACKGROUND
    saved = save(settings, ds, image_id, edited, base_version=None, source="gt", note="top is background")
    mask, version = groundtruth.current(settings, ds, image_id)
    assert version == 1 and np.array_equal(mask, edited)
    assert saved.iou_gt == pytest.approx(pet_iou(edited, official)) and saved.iou_gt < 1.0
    assert (saved.height, saved.width) == official.shape


def test_a_note_or_author_with_a_nul_character_is_refused_before_anything_is_written(settings: Settings, ds):
    with pytest.raises(PetSegError, match="note contains a NUL"):
        save(settings, ds, ID, _mask(ds), base_version=None, source="gt", note="ear\x00")
    with pytest.raises(PetSegError, match="author contains a NUL"):
        save(settings, ds, ID, _mask(ds), base_version=None, source="gt", author="a\x00b")
    assert _rows(settings) == [] and _mask_files(settings) == []
