"""Headless Chromium for the tests that check a page as people see it (the Prefect UI, the run report).

Each call gets a fresh profile folder, so no state leaks between tests, and every background service
Chromium would reach the network for is off (this machine has loopback only).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / "docs" / "screenshots"
# A single-page app fills its page after its API answers; virtual time lets it settle without a sleep.
SETTLE_MS = 15000


def _chromium() -> str:
    found = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if not found:
        pytest.skip("Chromium is not installed (Debian package `chromium`)")
    return found


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={SETTLE_MS}",
                *args,
            ],
            capture_output=True,
            timeout=timeout,
            check=True,
        )


def screenshot(url: str, out: Path, *, size: str = "1280,900") -> Path:
    """A PNG of `url` as rendered, written to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _run(f"--screenshot={out}", f"--window-size={size}", url)
    return out


def rendered_text(url: str) -> str:
    """The page's DOM after its scripts ran (what a person would read, with the markup)."""
    return _run("--dump-dom", url).stdout.decode("utf-8", errors="replace")


def keep(png: Path, name: str) -> Path:
    """Copy a test's screenshot to docs/screenshots/ (the README links them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / name
    shutil.copyfile(png, target)
    return target
