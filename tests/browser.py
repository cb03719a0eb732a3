"""Debian's headless Chromium, driven by Playwright, for the page tests (console, replay report)."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
NEEDS = "needs Debian's chromium at /usr/bin/chromium: run `make system-packages`"


def launch(p):
    """A headless Chromium from ``sync_playwright()``'s ``p`` (no browser is downloaded)."""
    return p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])


def watch(page, dialogs: list[str], errors: list[str]):
    """Collect, as they come, the message of every dialog ``page`` opens (each dismissed: an injected script's
    ``alert`` would show there) and of its uncaught errors. Gives the page back."""
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page
