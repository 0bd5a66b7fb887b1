"""Headless Chromium for page tests: Debian's ``chromium``, driven by Playwright (no browser download).

No browser is a failure, never a skip: ``make test`` installs it (the Makefile's ``system-deps``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

from playwright.sync_api import Browser, sync_playwright

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str:
    """Debian's Chromium (``AURA_CHROMIUM`` overrides); RuntimeError when there is none."""
    wanted = os.environ.get("AURA_CHROMIUM")
    found = [wanted] if wanted else [path for name in CHROMIUM_NAMES if (path := shutil.which(name))]
    if not found or not os.access(found[0], os.X_OK):
        raise RuntimeError(
            "page tests need headless Chromium: apt-get install chromium fonts-noto-cjk (make system-deps does)"
        )
    return found[0]


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # Playwright passes --no-sandbox (chromium_sandbox defaults to off), which root needs.
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield browser
        finally:
            browser.close()
