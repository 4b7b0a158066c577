"""Dashboard latency in a real browser on a 7,390-image generated set evaluated by a tiny model.

    $ .venv/bin/python benchmarks/dashboard_latency.py                      # generates, trains, evaluates once
    $ .venv/bin/python benchmarks/dashboard_latency.py --workdir /tmp/bench --repeat 5

Headless Chromium (Playwright driving /usr/bin/chromium) against ``streamlit run``; each number is the median
of ``--repeat`` runs of "time until the content is visible":

- Browse cold: /browse opened with an empty thumbnail cache, until the grid's 48 thumbnails have loaded.
- Browse warm: the same with the thumbnails cached on disk.
- Browse next page: click "Next", until the 48 new thumbnails have loaded.
- Compare (link): /compare?image=<id> opened, until the photo and overlay panels have loaded.
- Compare (next): "Next" on Compare, until the next image's panels have loaded (no page load).
- Distributions: /distributions opened, until the plots and the per-breed table are drawn.
- ``*_nav``: the same views reached inside an open session (sidebar link, or a Browse tile for Compare), which
  is how a user moves between them: no page load, no new websocket session.

plus the server's peak RSS (VmHWM). Bars: Browse warm <= 1.0 s, Compare <= 0.5 s, Distributions <= 1.0 s,
RSS <= 1 GB. Full page loads include Streamlit's websocket handshake; other processes on the cores skew all.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser import CHROMIUM, CHROMIUM_ARGS, streamlit_process  # noqa: E402

RUN = "bench-tiny"
BARS = {"browse_warm": 1.0, "browse_warm_nav": 1.0, "compare_link": 0.5, "compare_nav": 0.5, "compare_next": 0.5,
        "distributions": 1.0, "distributions_nav": 1.0}
_IMAGES_LOADED = """(n) => {
    const imgs = [...document.querySelectorAll('[data-testid="stImage"] img')];
    return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0)
        && !document.querySelector('[data-testid="stStatusWidget"]');
}"""
# Browse draws its page of thumbnails as one grid element (dashboard/gallery.py), tiles are links to Compare.
_TILES_LOADED = """(n) => {
    const imgs = [...document.querySelectorAll('.petseg-gallery img')];
    return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0)
        && !document.querySelector('[data-testid="stStatusWidget"]');
}"""
_TILE_LINK = '.petseg-gallery a[href*="compare"]'


def prepare(workdir: Path, count: int, image_size: int) -> tuple[Path, Path]:
    from core.config import Settings
    from core.evaluate import evaluate
    from core.runs import load_eval
    from core.synth import generate
    from core.train import TrainConfig, train

    data, workspace = workdir / "data", workdir / "workspace"
    if not (data / "annotations" / "list.txt").exists():
        started = time.perf_counter()
        generate(data, count=count, seed=0, progress=True)
        print(f"generated {count} images in {time.perf_counter() - started:.0f} s", flush=True)
    settings = Settings.resolve(data=data, workspace=workspace)
    if not (settings.run_dir(RUN) / "best.pt").exists():
        train(settings, TrainConfig(run=RUN, preset="quick", epochs=1, image_size=image_size, encoder_weights=None,
                                    max_images=300, progress=True))
    if load_eval(settings, RUN, "test") is None or len(load_eval(settings, RUN, "test")) < 100:
        started = time.perf_counter()
        summary = evaluate(settings, run=RUN, split="test", progress=True)
        print(f"evaluated {summary['images']} test images in {time.perf_counter() - started:.0f} s", flush=True)
    return data, workspace


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(action, wait) -> float:
    started = time.perf_counter()
    action()
    wait()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/petseg-bench-dashboard"))
    parser.add_argument("--count", type=int, default=7390)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: install Debian's chromium", file=sys.stderr)
        return 2
    data, workspace = prepare(args.workdir, args.count, args.image_size)
    thumbs = workspace / "cache" / "thumbs"

    from playwright.sync_api import sync_playwright

    results: dict[str, list[float]] = {k: [] for k in (
        "browse_cold", "browse_warm", "browse_warm_nav", "browse_next", "compare_link", "compare_nav", "compare_next",
        "distributions", "distributions_nav")}
    with streamlit_process(data, workspace, args.workdir / "server.log") as (proc, url):
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            # The first request of a fresh server goes to the entry point (see tests/test_browser_views.py),
            # and warms the imports and the dataset index cache once, as any first visit would.
            page.goto(url)
            page.get_by_role("heading", name="PetSeg").wait_for()
            page.goto(f"{url}/distributions")
            page.locator(".js-plotly-plot").first.wait_for()

            def browse_loaded() -> None:
                page.wait_for_function(_TILES_LOADED, arg=48)

            for _ in range(args.repeat):
                shutil.rmtree(thumbs, ignore_errors=True)
                results["browse_cold"].append(timed(lambda: page.goto(f"{url}/browse"), browse_loaded))
            for _ in range(args.repeat):
                results["browse_warm"].append(timed(lambda: page.goto(f"{url}/browse"), browse_loaded))
            for _ in range(args.repeat):
                first = page.locator(_TILE_LINK).first.get_attribute("href")

                def next_page_loaded(before: str | None = first) -> None:
                    page.wait_for_function(
                        """(before) => {
                            const a = document.querySelector('.petseg-gallery a[href*="compare"]');
                            return a && a.getAttribute('href') !== before;
                        }""", arg=before)
                    browse_loaded()

                results["browse_next"].append(timed(lambda: page.get_by_role("button", name="Next ▶").click(),
                                                    next_page_loaded))
            ids = [line.split()[0] for line in (data / "annotations" / "test.txt").read_text().splitlines()
                   if line and not line.startswith("#")]

            def compare_loaded() -> None:
                page.wait_for_function(_IMAGES_LOADED, arg=2)

            for image_id in ids[: args.repeat]:
                results["compare_link"].append(timed(lambda i=image_id: page.goto(f"{url}/compare?image={i}"),
                                                     compare_loaded))
            for _ in range(args.repeat):
                before = page.url

                def next_image_loaded(before: str = before) -> None:
                    page.wait_for_function("(before) => location.href !== before", arg=before)
                    compare_loaded()

                results["compare_next"].append(timed(lambda: page.get_by_role("button", name="Next ▶").click(),
                                                     next_image_loaded))

            def distributions_loaded() -> None:
                page.wait_for_function(
                    """() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4
                        && document.querySelector('[data-testid="stDataFrame"]')
                        && !document.querySelector('[data-testid="stStatusWidget"]')""")

            for _ in range(args.repeat):
                results["distributions"].append(timed(lambda: page.goto(f"{url}/distributions"),
                                                      distributions_loaded))

            def nav(name: str) -> None:
                page.locator(f'[data-testid="stSidebarNav"] a[href$="/{name}"]').click()

            def only_compare_loaded() -> None:
                page.wait_for_function(
                    """() => location.pathname.endsWith('/compare')
                        && document.querySelectorAll('[data-testid="stImage"] img').length >= 2
                        && document.querySelectorAll('[data-testid="stImage"] img').length <= 8
                        && !document.querySelector('.petseg-gallery')
                        && [...document.querySelectorAll('[data-testid="stImage"] img')].every(i => i.complete)
                        && !document.querySelector('[data-testid="stStatusWidget"]')""")

            for i in range(args.repeat):
                results["browse_warm_nav"].append(timed(lambda: nav("browse"), browse_loaded))
                tile = page.locator(_TILE_LINK).nth(i + 1)
                results["compare_nav"].append(timed(tile.click, only_compare_loaded))
                results["distributions_nav"].append(timed(lambda: nav("distributions"), distributions_loaded))
            browser.close()
        rss = peak_rss_mb(proc.pid)

    print(f"\ndataset: {args.count} generated images; run {RUN} ({args.image_size} px) evaluated on test")
    print(f"{'measure':<16}{'median s':>10}{'min s':>8}{'max s':>8}  bar")
    for name, values in results.items():
        bar = BARS.get(name)
        verdict = "" if bar is None else f"<= {bar:.1f} s {'ok' if statistics.median(values) <= bar else 'MISSED'}"
        print(f"{name:<16}{statistics.median(values):>10.2f}{min(values):>8.2f}{max(values):>8.2f}  {verdict}")
    print(f"{'server peak RSS':<16}{rss:>10.0f} MB  <= 1024 MB {'ok' if rss <= 1024 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
