"""Make docs/compare-view.png: the review page's compare view on a scan of real photos.

Builds the sample photo library of ``docs/make_screenshot.py`` (scikit-image's sample photos
with byte copies, web exports, re-encodes and edits), scans it, writes the JSON report and
the HTML page, opens the first group in the compare view with the original on the left and
its web export on the right, zooms in and screenshots it in headless Chromium. Run from the
repository root::

    .venv/bin/python scripts/screenshot.py          # writes docs/compare-view.png

Needs Debian's ``chromium`` and ``pip install playwright`` (as the browser tests do).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "docs"))

from make_screenshot import CHROMIUM_ARGS, MARKER, build_library  # noqa: E402

import lookalike  # noqa: E402


def screenshot(html: Path, out: Path, *, width: int = 1400, height: int = 900) -> str:
    """Open the compare view on a group with a web export (original left, export right), zoom in
    on the middle of the picture, save the screenshot; return the zoom readout."""
    from playwright.sync_api import sync_playwright

    exe = os.environ.get("LOOKALIKE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height},
                                device_scale_factor=1)
        page.goto(html.resolve().as_uri())
        page.locator("article.group").first.locator("button.compare-btn").click()
        for _ in range(page.locator("article.group").count()):  # a group with a web export
            names = page.eval_on_selector_all(".cmp-side[data-side='0'] .cmp-pick option",
                                              "os => os.map(o => o.textContent)")
            if any("_web" in n for n in names):
                break
            page.keyboard.press("n")

        def pick(side: int, part: str) -> None:
            index = next((i for i, n in enumerate(names) if part in n), None)
            if index is not None:
                page.select_option(f".cmp-side[data-side='{side}'] .cmp-pick", str(index))

        pick(0, "IMG_")  # the camera original (first by name among the holiday files)
        pick(1, "_web")  # its half-size, quality-60 web export
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
        browser.close()
    return zoom


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "compare-view.png")
    ap.add_argument("--workdir", type=Path,
                    default=Path(tempfile.gettempdir()) / "lookalike-compare-demo")
    ap.add_argument("--keep", action="store_true", help="keep the sample library and report")
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
        result = lookalike.scan(lib, workers=1)
        report = work / "report.json"
        lookalike.write_report(result, report, argv=["lookalike", "scan", str(lib)])
        page = work / "report.html"
        lookalike.write_html(report, page)
        zoom = screenshot(page, args.out)
        print(f"{len(result.groups)} groups; page {page}; {zoom}; screenshot {args.out}")
    finally:
        if not args.keep:
            shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
