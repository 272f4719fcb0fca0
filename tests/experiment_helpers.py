"""Helpers shared by the experiment tests: a saved tiny model, config files, the real CLI."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from reflective_search import cli

SRC = Path(__file__).resolve().parents[1] / "src"
# How long a child run may go without reaching what a test waits for before the test calls
# it hung. A guard, not a speed bound: on a loaded two-core box a child spends a minute
# importing torch before its first record.
HANG_GUARD_S = 900
# What the installed ``reflective-search`` entry point runs.
ENTRY_POINT = "import sys; from reflective_search.cli import main; sys.exit(main())"


def save_model_once(model, tmp_path_factory) -> Path:
    """Save ``model`` into the session's temp dir once; later calls reuse the folder."""
    path = tmp_path_factory.getbasetemp() / "experiment-model"
    if not (path / "reflective_config.json").is_file():
        model.save_pretrained(path)
    return path


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``reflective-search ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def cli_process(*argv: str, **popen_options) -> subprocess.Popen:
    """``reflective-search ARGV`` as a child process (PYTHONPATH=src, one torch thread), with
    Ctrl-C's default action: a suite started as a background job (``nohup ... &``) inherits
    SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", ENTRY_POINT, *map(str, argv)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen_options)


def wait_for(condition, process: subprocess.Popen, what: str) -> None:
    """Poll ``condition`` until it holds; fail if ``process`` exits first, or after HANG_GUARD_S."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        assert process.poll() is None, f"the run exited before {what}: {process.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"no {what} after {HANG_GUARD_S} s: the run looks hung"
        time.sleep(0.01)


def read_results(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def by_key(records: list[dict]) -> dict[tuple, dict]:
    """Records keyed by (problem_id, point, seed); a duplicate key fails the test."""
    keyed = {}
    for record in records:
        key = (json.dumps(record["problem_id"]), json.dumps(record["point"], sort_keys=True), record["seed"])
        assert key not in keyed, f"duplicate record {key}"
        keyed[key] = record
    return keyed


def outcome(record: dict) -> dict:
    """The part of a record that must not depend on timing, batching or workers."""
    keep = ("method", "answer", "correct", "score", "generated_tokens", "forwarded_tokens", "expansions", "flops", "text")
    return {key: record[key] for key in keep}
