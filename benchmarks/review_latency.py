"""Review corrections latency in a real headless Chromium on the real sample: accept or skip, until the next is shown.

    $ .venv/bin/python benchmarks/review_latency.py                       # one submitted version per sample image
    $ .venv/bin/python benchmarks/review_latency.py --data DIR --count 10 --json

Fills a fresh temporary workspace with review required and one submitted version per image (authored by someone
else than the reviewer: the OS user, who is the admin of a store without users), starts ``streamlit run`` on a free
loopback port, opens Review corrections and measures, per item, the time from a click on Accept (or Skip, every
other item, so both paths are timed) until the next item's title is on screen. The time is taken inside the page
(``performance.now()`` around the click and a MutationObserver on the document), so Playwright's own round trips
are not counted. Prints median and p90 against the issue's bar: next item <= 0.25 s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `core` and `tests` importable from the project root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.annotate_latency import latency_summary  # noqa: E402
from core import corrections, groundtruth  # noqa: E402
from core.config import Settings  # noqa: E402
from core.dataset import open_dataset  # noqa: E402
from core.masks import PET  # noqa: E402
from tests.browser import chromium_page, streamlit_server, wait_for_app  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "oxford-pet-sample"
BAR = 0.25
AUTHOR = "annotator@example.org"

# Click the button with `label`, then resolve with the milliseconds until an h3 other than `before` is shown.
_TIMED_CLICK = """
async ([label, before]) => {
  const title = () => { const h = document.querySelector('[data-testid="stHeading"] h3');
                        return h ? h.textContent.trim() : null; };
  const t0 = performance.now();
  const finished = new Promise((resolve) => {
    const observer = new MutationObserver(() => {
      const now = title();
      if (now && now !== before) { observer.disconnect(); resolve(performance.now() - t0); }
    });
    observer.observe(document.body, { childList: true, subtree: true, characterData: true });
  });
  [...document.querySelectorAll('button')].find((b) => b.innerText.includes(label)).click();
  return await finished;
}
"""


def _seed(data: Path, workspace: Path, count: int) -> list[str]:
    settings = Settings.resolve(data=data, workspace=workspace)
    ds = open_dataset(data, workspace)
    corrections.set_review_mode(settings, "required")
    ids = [i for i in ds.ids() if ds.table.loc[i, "readable"]][:count]
    for image_id in ids:
        mask, _version = groundtruth.current(settings, ds, image_id)
        mask = mask.copy()
        height, width = mask.shape
        mask[height // 4: height // 2, width // 4: width // 2] = PET  # a visible change for the diff
        corrections.save(settings, ds, image_id, mask, base_version=None, source="gt", author=AUTHOR)
        time.sleep(0.002)  # distinct created_at: the queue order is the save order
    return ids


def run(data: Path, workspace: Path, count: int) -> dict[str, dict[str, float]]:
    ids = _seed(data, workspace, count)
    times: dict[str, list[float]] = {"accept": [], "skip": []}
    with streamlit_server(data, workspace, workspace / "server.log") as url, chromium_page() as page:
        page.goto(f"{url}/review_corrections")
        page.wait_for_selector('[data-testid="stHeading"] h3', timeout=60_000)
        wait_for_app(page)
        for number in range(len(ids) - 1):
            before = page.locator('[data-testid="stHeading"] h3').first.inner_text().strip()
            kind = "accept" if number % 2 == 0 else "skip"
            times[kind].append(page.evaluate(_TIMED_CLICK, ["Accept" if kind == "accept" else "Skip", before]) / 1000)
            wait_for_app(page)
    return {name: latency_summary(values) for name, values in times.items() if values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="petseg-review-bench-") as tmp:
        results = run(args.data, Path(tmp), args.count)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    labels = {"accept": "accept until the next item is shown", "skip": "skip until the next item is shown"}
    for name, numbers in results.items():
        verdict = "ok" if numbers["median_s"] <= BAR else "over the bar"
        print(f"{labels[name]:<40} median {numbers['median_s']:.3f} s  p90 {numbers['p90_s']:.3f} s  "
              f"(bar {BAR} s, n={numbers['n']}: {verdict})")


if __name__ == "__main__":
    main()
