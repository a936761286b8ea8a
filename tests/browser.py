"""Headless Debian Chromium through Playwright, for every browser test: one way to launch it and
one way to log in to a hub (JupyterHub's own login form)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium, not a downloaded one
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: where a successful login lands: the home page, the spawn form or page, or a running server
LOGGED_IN = re.compile(r".*/(hub/(home|spawn)|user/).*")


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed on exit."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def log_in(page: Page, hub_url: str, user: str, password: str) -> None:
    """Log ``user`` in through the hub's login form at ``hub_url`` (the public URL, with or
    without its trailing slash) and wait until the hub has answered with a page of theirs."""
    page.goto(f"{hub_url.rstrip('/')}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_url(LOGGED_IN)


def run_command(page: Page, label: str) -> None:
    """Run JupyterLab's command ``label`` from its command palette, as a user would."""
    page.keyboard.press("Control+Shift+c")
    page.locator(".lm-CommandPalette-input").fill(label)
    page.keyboard.press("Enter")
