"""Export, read-back and prediction-import speed per format on the real sample (or any dataset).

    $ .venv/bin/python benchmarks/interop_speed.py                 # the 20-image sample, a fresh workspace
    $ .venv/bin/python benchmarks/interop_speed.py --data DIR --json

For every export format: seconds to write the zip, its size, and seconds to read every mask back
(:func:`core.interop.read_masks`, decoding included). Then the Label Studio RLE on one real mask against the
Label Studio SDK's own ``mask2rle``/``decode_rle`` when the SDK is installed, and ``predictions import`` of the
official trimaps as a run (read, validate, score, write), in images per second.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `core` importable from the project root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from core.config import Settings  # noqa: E402
from core.dataset import load_trimap, open_dataset  # noqa: E402
from core.export import FORMATS, export_archive  # noqa: E402
from core.interop import IMPORT_FORMATS, labelstudio, read_masks  # noqa: E402
from core.interop.runs import import_predictions  # noqa: E402
from core.masks import PET  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "oxford-pet-sample"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SAMPLE)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict = {"formats": {}}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.resolve(data=args.data, workspace=Path(tmp) / "ws")
        ds = open_dataset(settings.data, settings.workspace)
        sizes = {i: (int(r["height"]), int(r["width"])) for i, r in ds.table.iterrows()}
        for fmt in FORMATS:
            started = time.perf_counter()
            path = export_archive(settings, fmt=fmt, out=Path(tmp) / f"{fmt}.zip", ds=ds).path
            written = time.perf_counter() - started
            row = {"images": len(ds), "export_s": round(written, 3), "zip_mb": round(path.stat().st_size / 1e6, 2)}
            if fmt in IMPORT_FORMATS:
                started = time.perf_counter()
                count = sum(1 for m in read_masks(fmt, path) if m.load(sizes[m.stem]) is not None)
                row["read_back_s"] = round(time.perf_counter() - started, 3)
                row["read_back_images"] = count
            results["formats"][fmt] = row

        image_id = ds.ids()[0]
        mask = load_trimap(ds, image_id) == PET
        results["rle"] = {"image": image_id, "shape": list(mask.shape), **_rle_timings(mask)}

        folder = Path(tmp) / "preds"
        folder.mkdir()
        for i in ds.ids():
            shutil.copy(ds.trimap_path(i), folder / f"{i}.png")
        started = time.perf_counter()
        report = import_predictions(settings, "bench", folder, split="all", ds=ds)
        seconds = time.perf_counter() - started
        results["predictions_import"] = {"images": report.imported, "seconds": round(seconds, 3),
                                         "images_per_second": round(report.imported / seconds, 1)}
    if args.json:
        print(json.dumps(results))
        return
    for fmt, row in results["formats"].items():
        back = f", read back {row['read_back_s']:.3f} s" if "read_back_s" in row else ""
        print(f"{fmt:12s} {row['images']} images: export {row['export_s']:.3f} s, {row['zip_mb']:.2f} MB{back}")
    rle = results["rle"]
    sdk = (f"; SDK encode {rle['sdk_encode_ms']:.1f} ms, decode {rle['sdk_decode_ms']:.1f} ms, same bytes: "
           f"{rle['same_bytes']}") if "sdk_encode_ms" in rle else ""
    print(f"Label Studio RLE of {rle['image']} {rle['shape']}: encode {rle['encode_ms']:.1f} ms, decode "
          f"{rle['decode_ms']:.1f} ms{sdk}")
    imp = results["predictions_import"]
    print(f"predictions import: {imp['images']} images in {imp['seconds']:.3f} s ({imp['images_per_second']} img/s)")


def _rle_timings(mask: np.ndarray) -> dict:
    def best(fn, repeat: int = 5) -> float:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times) * 1000

    height, width = mask.shape
    rle = labelstudio.encode_rle(mask)
    out = {"encode_ms": best(lambda: labelstudio.encode_rle(mask)),
           "decode_ms": best(lambda: labelstudio.decode_rle(rle, height, width)), "rle_bytes": len(rle)}
    spec = importlib.util.find_spec("label_studio_sdk")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "converter" / "brush.py"
        module_spec = importlib.util.spec_from_file_location("ls_brush", path)
        brush = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(brush)
        binary = np.where(mask, 255, 0).astype(np.uint8)
        out.update(sdk_encode_ms=best(lambda: brush.mask2rle(binary)),
                   sdk_decode_ms=best(lambda: brush.decode_rle(rle)), same_bytes=brush.mask2rle(binary) == rle)
    return out


if __name__ == "__main__":
    main()
