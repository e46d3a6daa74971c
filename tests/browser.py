"""What the browser tests share: headless Debian Chromium (never Playwright's own download) driven by Playwright,
and helpers to choose dropdown options, read shown images and Markdown, and keep screenshots.

A test opens its page with `chromium_page(url)`; it is skipped only when Chromium cannot be launched.
"""

from __future__ import annotations

import base64
import io
import shutil
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Locator, Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# dependencies.md §8, plus: resolve nothing but localhost (gradio's page asks for web fonts; offline that only
# costs time)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
WAIT_MS = 20_000
VIEWPORT = {"width": 1280, "height": 1000}
expect.set_options(timeout=WAIT_MS)


@contextmanager
def chromium_page(url: str) -> Iterator[Page]:
    """A page of a fresh headless Chromium, opened at `url`; skips the test when Chromium cannot start."""
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        except Exception as exc:  # no chromium, or one that cannot start here
            pytest.skip(f"chromium cannot be launched: {exc}")
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(WAIT_MS)
            page.goto(url)
            yield page
        finally:
            browser.close()


def markdown(page: Page, selector: str) -> Locator:
    """A gr.Markdown by its elem_id selector (gradio 3.41 puts the elem_id on two nested elements)."""
    return page.locator(selector).first


def choose(page: Page, dropdown: str, option: str) -> None:
    """Pick `option` in the gr.Dropdown at selector `dropdown` the way a user does: type, click the entry."""
    field = page.locator(f"{dropdown} input")
    field.click()
    field.fill(option)
    page.locator(f"{dropdown} li", has_text=option).first.click()
    expect(field).to_have_value(option)


def image_src(page: Page, base_url: str, selector: str, nth: int = 0) -> np.ndarray:
    """The RGB pixels of the `nth` <img> under `selector` (a data: URL, or a file the server serves)."""
    src = page.locator(f"{selector} img").nth(nth).get_attribute("src")
    if src.startswith("data:"):
        data = base64.b64decode(src.split(",", 1)[1])
    else:
        with urllib.request.urlopen(src if src.startswith("http") else base_url + "/" + src.lstrip("/")) as r:
            data = r.read()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def shot(page: Page, folder: Path, name: str) -> Path:
    """A full-page screenshot `folder/name.png`."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def keep(shots: Iterable[Path], folder: Path) -> None:
    """Copy screenshots out of the test's tmp folder, for a person to look at."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in shots:
        shutil.copy(path, folder / path.name)
