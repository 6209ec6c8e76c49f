"""Headless-browser check: report.html loads in Chromium with every image decoded.

Needs /usr/bin/chromium and the ``playwright`` Python package (``make test-browser``
installs both; no ``playwright install`` — the system Chromium is used)."""

import shutil
from pathlib import Path

import pytest

from mfjko.config import parse_config
from mfjko.runner import run
from support import tiny_raw

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        return f"{CHROMIUM} is missing (run `make test-browser` to install it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (run `make test-browser` to install it)"
    return None


@pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))
def test_report_loads_with_all_images(tmp_path):
    from playwright.sync_api import sync_playwright

    out = tmp_path / "run"
    run(parse_config(tiny_raw()), out, progress=False)
    page_url = (out / "report.html").resolve().as_uri()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_url, wait_until="load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.dataset.file, e.complete, e.naturalWidth])")
            title = page.title()
            table_rows = page.eval_on_selector_all("#metrics tr", "els => els.length")
        finally:
            browser.close()
    assert not errors
    assert "tiny" in title
    assert len(images) >= 7
    for name, complete, width in images:
        assert complete and width > 100, f"image {name} did not load"
    assert table_rows > 3
