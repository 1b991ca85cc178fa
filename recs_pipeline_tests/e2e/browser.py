"""Headless Chromium: screenshots and rendered DOM of Dagster UI pages."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

# Text the Dagster UI renders when a page or a GraphQL call fails.
UI_ERROR_MARKERS = (
    "PythonError",
    "Something went wrong",
    "An unexpected error",
    "Unexpected error",
    "Error loading",
    "Unable to load",
    "could not be loaded",
    "Failed to load",
    "Run not found",
    "No such run",
    "DagsterInvalid",
)

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--hide-scrollbars",
)
DEFAULT_WINDOW = (1600, 1000)


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise AssertionError(
            "chromium is not installed: `apt-get update && apt-get install -y chromium` "
            "(`make test` runs deploy/test/services, which does this)"
        )
    return found


def _chromium(
    args: list[str], profile: Path, timeout: float, window: tuple[int, int] = DEFAULT_WINDOW
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium_binary(), *CHROMIUM_FLAGS, f"--window-size={window[0]},{window[1]}",
         f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=timeout, check=False, start_new_session=True,
    )


def capture(
    url: str, png: Path, profile: Path, budget_ms: int = 15000,
    window: tuple[int, int] = DEFAULT_WINDOW,
) -> str:
    """Screenshot `url` into `png` and return the rendered DOM (both after `budget_ms`)."""
    shot = _chromium(
        [f"--screenshot={png}", f"--virtual-time-budget={budget_ms}", url], profile, 120, window
    )
    assert png.exists() and png.stat().st_size > 10_000, f"no screenshot of {url}: {shot.stderr}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = _chromium(["--dump-dom", f"--virtual-time-budget={budget_ms}", url], profile, 120)
    assert dom.returncode == 0 and "<html" in dom.stdout, f"no DOM for {url}: {dom.stderr}"
    return dom.stdout


def ui_errors(dom: str) -> list[str]:
    return [marker for marker in UI_ERROR_MARKERS if marker.lower() in dom.lower()]
