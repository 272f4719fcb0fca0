"""The test harness itself: browser tests without Chromium, and the session's sealed home."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

import chromium_check
from chromium_check import require_chromium

MISSING = "chromium is not installed: apt-get install chromium to run the viewer tests in a real browser"


@pytest.fixture
def path_without_chromium(tmp_path, monkeypatch) -> Path:
    """PATH is one empty folder; the probe runs afresh now and again after the test."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    chromium_check.find_chromium.cache_clear()
    yield folder
    monkeypatch.undo()
    chromium_check.find_chromium.cache_clear()


def test_a_missing_browser_skips_with_how_to_install_it(path_without_chromium, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_chromium()
    assert skipped.value.msg == MISSING


def test_a_missing_browser_fails_under_ci(path_without_chromium, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as failed:
        require_chromium()
    assert failed.value.msg == f"{MISSING} (CI is set: browser tests must run, not skip)"


def test_a_chromium_that_cannot_start_is_not_usable(path_without_chromium, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    broken = path_without_chromium / "chromium"
    broken.write_text("#!/bin/sh\necho 'chromium: error while loading shared libraries: libnss3.so' >&2\nexit 127\n")
    broken.chmod(0o755)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_chromium()
    assert skipped.value.msg == (f"chromium at {broken} cannot render a page headless (chromium: error while loading "
                                 "shared libraries: libnss3.so): reinstall it (apt-get install chromium)")


@pytest.mark.parametrize("value, expected", [("true", True), ("1", True), ("yes", True), ("", False), ("0", False),
                                             ("false", False), ("False", False), ("no", False)])
def test_ci_is_any_value_but_empty_zero_false_or_no(value, expected, monkeypatch):
    monkeypatch.setenv("CI", value)
    assert chromium_check.in_ci() is expected


def test_home_and_caches_are_a_fresh_folder_of_the_session():
    import matplotlib

    home = Path(os.environ["HOME"])
    assert home.parent == Path(tempfile.gettempdir()) and home.name.startswith("reflective-search-test-home-")
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR", "HF_HOME"):
        assert Path(os.environ[name]).is_relative_to(home), name
    assert Path(matplotlib.get_cachedir()).is_relative_to(home)
    assert (os.environ["MPLBACKEND"], os.environ["HF_HUB_OFFLINE"]) == ("Agg", "1")
