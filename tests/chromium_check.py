"""Whether this machine has a usable headless Chromium, and what a browser test does without one.

Tests marked ``browser`` (pytest.ini) need one. Without it they are skipped with one line
saying what is missing and how to get it, so the README's test command passes on a fresh
machine; under CI (``CI`` set to anything but empty, 0, false or no) they fail instead,
so CI never goes green with the viewer untested.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile

import pytest

INSTALL = "apt-get install chromium"
PROBE_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--dump-dom"]
PROBE_PAGE = "data:text/html,<p>chromium-ok</p>"
# A hang guard: a first headless start on a loaded box takes tens of seconds, and a timed-out
# probe would skip every browser test.
PROBE_TIMEOUT_S = 300


def in_ci() -> bool:
    """Whether the environment says this is CI (``CI=true``, as .ci/run sets)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@functools.cache
def find_chromium() -> tuple[str | None, str | None]:
    """(the binary, None) if Chromium runs headless here, else (None, why not). Probed once a session."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        return None, f"chromium is not installed: {INSTALL} to run the viewer tests in a real browser"
    return (binary, None) if (why := _probe(binary)) is None else (None, why)


def _probe(binary: str) -> str | None:
    """Why ``binary`` cannot render a page headless (None: it can)."""
    with tempfile.TemporaryDirectory(prefix="chromium-probe-") as profile:
        command = [binary, *PROBE_FLAGS, f"--user-data-dir={profile}", PROBE_PAGE]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"chromium at {binary} does not run ({type(exc).__name__}): reinstall it ({INSTALL})"
    if "chromium-ok" in done.stdout:
        return None
    last = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
    return f"chromium at {binary} cannot render a page headless ({last}): reinstall it ({INSTALL})"


def require_chromium() -> str:
    """The Chromium binary; without one, skip the calling test (or, under CI, fail it)."""
    binary, why = find_chromium()
    if binary is not None:
        return binary
    if in_ci():
        pytest.fail(f"{why} (CI is set: browser tests must run, not skip)", pytrace=False)
    pytest.skip(why)
