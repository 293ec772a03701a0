"""Make docs/report.png and docs/compare-view.png: the review page and its compare view.

Builds a small photo library of real photos (scikit-image's samples via
``benchmarks/realdata.py``; generated pictures if those cannot be fetched) with the usual
kinds of duplicates: byte copies, resized exports, re-encoded JPEGs, edited and cropped
versions, plus one broken file. Then, for each screenshot, it scans the library, writes the
JSON report and the HTML page, and screenshots the page in headless Chromium: the page itself
(``report``: phash, threshold 10) and the compare view (``compare``: the default settings), on
the first group with a web export, its original on the left, zoomed in. Run from the
repository root::

    .venv/bin/python docs/make_screenshot.py            # writes both
    .venv/bin/python docs/make_screenshot.py --only compare   # docs/compare-view.png only
    .venv/bin/python docs/make_screenshot.py --keep     # also keeps the sample library

Needs Debian's ``chromium`` and ``pip install playwright`` (as the browser tests do).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PIL import Image, ImageEnhance

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import lookalike  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
MARKER = ".lookalike-demo"  # only a folder holding this file is ever deleted by this script
MTIME = 1_699_000_000  # fixed file times: the screenshot does not change from run to run


def _photos() -> list[Image.Image]:
    try:
        import realdata

        wanted = ["chelsea.png", "astronaut.png", "coffee.png", "rocket.jpg", "motorcycle_left.png"]
        by_name = {p.name: p for p in realdata.skimage_photos(photos_only=True)}
        images = [Image.open(by_name[n]).convert("RGB") for n in wanted if n in by_name]
        if len(images) >= 4:
            return images
    except Exception as exc:  # no network, no registry: fall back to generated pictures
        print(f"real photos unavailable ({exc}); using generated pictures", file=sys.stderr)
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import _scene

    return [_scene(seed, (480, 360)) for seed in range(1, 6)]


def build_library(root: Path) -> Path:
    """A photo folder with typical duplicates; returns it."""
    lib = root / "Pictures"
    for sub in ("2023/holiday", "phone-backup", "exports", "edited"):
        (lib / sub).mkdir(parents=True, exist_ok=True)
    photos = _photos()
    for i, img in enumerate(photos):
        n = 1040 + i
        img.save(lib / "2023/holiday" / f"IMG_{n}.jpg", quality=92)
        if i in (0, 1, 3):  # byte-identical backup copy
            shutil.copyfile(lib / "2023/holiday" / f"IMG_{n}.jpg",
                            lib / "phone-backup" / f"IMG_{n} (1).jpg")
        if i in (0, 2, 3):  # a small export for the web
            w, h = img.size
            img.resize((w // 2, h // 2), Image.Resampling.LANCZOS).save(
                lib / "exports" / f"IMG_{n}_web.jpg", quality=60)
        if i in (0, 2):  # brightened and slightly cropped: a near duplicate
            w, h = img.size
            edit = ImageEnhance.Brightness(img).enhance(1.15)
            edit = edit.crop((w // 40, h // 40, w - w // 40, h - h // 40))
            edit.save(lib / "edited" / f"IMG_{n}_edit.png")
        if i == 1:
            img.save(lib / "exports" / f"IMG_{n}.webp", quality=80)
    (lib / "phone-backup" / "IMG_0999.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    for path in lib.rglob("*"):  # originals first, copies and edits days later
        jitter = zlib.crc32(path.name.encode()) % 2_000_000
        later = 0 if "holiday" in path.parts else 86_400 + jitter
        os.utime(path, (MTIME, MTIME + later))
    return lib


@contextlib.contextmanager
def _page(width: int, height: int) -> Iterator[Any]:
    """A headless Chromium page of ``width`` x ``height`` CSS pixels (scale 1)."""
    from playwright.sync_api import sync_playwright

    exe = os.environ.get("LOOKALIKE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height},
                                   device_scale_factor=1)
        finally:
            browser.close()


def review_screenshot(html: Path, out: Path) -> str:
    """The review page, with one reviewer's override; returns what it shows."""
    with _page(1280, 1480) as page:
        page.goto(html.resolve().as_uri())
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        # Show a reviewer's override: keep the web export of the second group after all.
        toggles = page.locator("article.group").nth(1).locator("button.toggle")
        if toggles.count() > 2:
            toggles.nth(2).click()
        page.mouse.move(0, 0)
        page.screenshot(path=str(out))
    return "the review page"


def compare_screenshot(html: Path, out: Path) -> str:
    """The compare view on a group with a web export (original left, export right), zoomed
    in on the middle of the picture; returns the zoom readout."""
    with _page(1400, 900) as page:
        page.goto(html.resolve().as_uri())
        page.locator("article.group").first.locator("button.compare-btn").click()
        for _ in range(page.locator("article.group").count()):  # a group with a web export
            names = page.eval_on_selector_all(".cmp-side[data-side='0'] .cmp-pick option",
                                              "os => os.map(o => o.textContent)")
            if any("_web" in n for n in names):
                break
            page.keyboard.press("n")
        for side, part in ((0, "IMG_"), (1, "_web")):  # the camera original, its web export
            index = next((i for i, n in enumerate(names) if part in n), None)
            if index is not None:
                page.select_option(f".cmp-side[data-side='{side}'] .cmp-pick", str(index))
        page.wait_for_function("() => [...document.querySelectorAll('.cmp-img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)")
        box = page.locator(".frame").first.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.4)
        page.mouse.wheel(0, -500)
        page.wait_for_timeout(100)
        page.mouse.move(0, 0)
        zoom = page.inner_text("#cmp-zoom")
        page.screenshot(path=str(out))
    return zoom


#: name -> (scan options and their command-line words, screenshot function, default output)
SHOTS: dict[str, tuple[dict[str, Any], list[str], Callable[[Path, Path], str], str]] = {
    "report": ({"method": "phash", "threshold": 10}, ["-m", "phash", "-t", "10"],
               review_screenshot, "report.png"),
    "compare": ({}, [], compare_screenshot, "compare-view.png"),  # the default settings
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=list(SHOTS), help="make this screenshot only")
    ap.add_argument("--out-dir", type=Path, default=REPO / "docs")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "lookalike-demo")
    ap.add_argument("--keep", action="store_true", help="keep the sample library and reports")
    args = ap.parse_args(argv)
    work: Path = args.workdir
    if work.exists():
        if not (work / MARKER).exists():
            ap.error(f"{work} exists and was not made by this script; pass another --workdir")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / MARKER).touch()
    try:
        lib = build_library(work)
        for name in [args.only] if args.only else SHOTS:
            options, words, shoot, file = SHOTS[name]
            result = lookalike.scan(lib, workers=1, **options)
            report = work / f"{name}.json"
            lookalike.write_report(result, report, argv=["lookalike", "scan", str(lib), *words])
            page = work / f"{name}.html"
            lookalike.write_html(report, page)
            out = args.out_dir / file
            print(f"{len(result.groups)} groups; page {page}; {shoot(page, out)}; "
                  f"screenshot {out}")
    finally:
        if not args.keep:
            shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
