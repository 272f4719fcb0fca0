"""The run directory and its append-only results file, safe against being killed at any moment.

Layout of a run directory:

* ``config.yaml``: the resolved experiment (every default filled in); written last when
  a directory is prepared, atomically, so its presence means the directory is complete.
* ``problems.jsonl``: the problems the run covers (id, text, record), to detect a changed
  problem file on resume.
* ``environment.json``: versions and git commit (no hostname); under ``executor``, what ran
  the latest invocation's work (for Ray: its version and the cluster's nodes and CPUs).
* ``results.jsonl``: one record per (problem, config point, seed).
* ``executor.jsonl``: what the workers did, one event per line: ``ready`` (a worker's model
  is loaded: its name, node id, pid), ``done`` (the keys of the records an item gave, and
  who solved it), ``lost`` (a worker died; the item it held is redone elsewhere).

Crash safety: only the parent process writes ``results.jsonl`` (workers send records
back), each record as one line in a single ``os.write`` on an ``O_APPEND`` descriptor,
then ``fsync``. A SIGKILL can therefore leave at most one partial last line, which
``ResultStore.open`` truncates away; records whose key is present are never redone.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from reflective_search.errors import ConfigError
from reflective_search.experiments.problems import Problem
from reflective_search.experiments.spec import run_identity

RESULTS_FILE = "results.jsonl"
CONFIG_FILE = "config.yaml"
PROBLEMS_FILE = "problems.jsonl"
ENVIRONMENT_FILE = "environment.json"
EXECUTOR_LOG = "executor.jsonl"
RecordKey = tuple[str, str, int]  # (problem id as JSON, point as sorted JSON, seed)


def record_key(record: Mapping[str, Any]) -> RecordKey:
    """What identifies a record: its problem, config point and seed."""
    return json.dumps(record["problem_id"]), json.dumps(record["point"], sort_keys=True), int(record["seed"])


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    """The complete records of a run directory (a partial last line is ignored, not removed)."""
    path = Path(run_dir) / RESULTS_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _parse_records(data[: data.rfind(b"\n") + 1], path)


def _parse_records(data: bytes, path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        try:
            record = json.loads(line)
            record_key(record)
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{path} line {number} is not a result record: delete the run directory "
                              "or remove that line") from None
        records.append(record)
    return records


class ResultStore:
    """Appends records to ``results.jsonl``; knows which keys are already done.

    The file is locked (``flock``) while open, so a second run on the same directory is
    refused instead of duplicating work; the kernel drops the lock when a process dies.
    """

    def __init__(self, path: Path, fd: int, records: list[dict[str, Any]]) -> None:
        self.path = path
        self.records = records  # every complete record, earlier runs' included
        self.done = {record_key(r) for r in records}  # keys never to be redone
        self._fd = fd

    @classmethod
    def open(cls, run_dir: Path) -> "ResultStore":
        """Open a prepared run directory's results, truncating a partial last line first."""
        path = Path(run_dir) / RESULTS_FILE
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"another run is writing {run_dir}: wait for it to finish or stop it") from None
        data = path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):  # a write cut short by a kill: the record is redone
            os.ftruncate(fd, complete)
        try:
            return cls(path, fd, _parse_records(data[:complete], path))
        except ConfigError:
            os.close(fd)
            raise

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record as one line, durably (see the module docstring)."""
        line = (json.dumps(record) + "\n").encode("utf-8")
        written = os.write(self._fd, line)
        if written != len(line):
            raise OSError(f"short write to {self.path} ({written} of {len(line)} bytes): is the disk full?")
        os.fsync(self._fd)
        self.records.append(dict(record))
        self.done.add(record_key(record))

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# -- preparing a run directory ---------------------------------------------------------------


def prepare_run_dir(run_dir: Path, resolved: Mapping[str, Any], problems: Sequence[Problem]) -> None:
    """Create the directory, or check that the one there holds this very experiment.

    Raises ConfigError (writing nothing) if the directory cannot be created or holds a
    different config or different problems.
    """
    run_dir = Path(run_dir)
    problems_text = "".join(json.dumps({"problem_id": p.problem_id, "record": p.record}) + "\n" for p in problems)
    if (run_dir / CONFIG_FILE).is_file():
        _check_same_run(run_dir, resolved, problems_text)
        return
    if (run_dir / RESULTS_FILE).exists():
        raise ConfigError(f"{run_dir} holds {RESULTS_FILE} but no {CONFIG_FILE}: pick a new output_dir or delete the old one")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(run_dir / PROBLEMS_FILE, problems_text)
        _write_atomic(run_dir / ENVIRONMENT_FILE, json.dumps(environment(), indent=2) + "\n")
        _write_atomic(run_dir / CONFIG_FILE, yaml.safe_dump(dict(resolved), sort_keys=False))
    except OSError as exc:
        raise ConfigError(f"output_dir {run_dir} is not writable ({exc.strerror or exc}): pick another output_dir") from None


def _check_same_run(run_dir: Path, resolved: Mapping[str, Any], problems_text: str) -> None:
    from reflective_search.yaml_io import read_yaml_mapping

    before = _flatten(run_identity(read_yaml_mapping(run_dir / CONFIG_FILE)))
    now = _flatten(run_identity(resolved))
    # Compare as record keys are built (JSON text): 1, 1.0 and True are different points there.
    same = lambda key: json.dumps(before.get(key), sort_keys=True) == json.dumps(now.get(key), sort_keys=True)
    changed = sorted(key for key in before.keys() | now.keys() if not same(key))
    advice = f"pick a new output_dir or delete {run_dir}"
    if changed:
        shown = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:3])
        raise ConfigError(f"{run_dir} holds a run of a different config ({shown}): {advice}")
    if (run_dir / PROBLEMS_FILE).read_text(encoding="utf-8") != problems_text:
        raise ConfigError(f"{run_dir} holds a run of different problems (the problem file changed): {advice}")


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a kill never leaves half a file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def environment() -> dict[str, Any]:
    """Versions of what produced the results (no hostname, no user names)."""
    import reflective_search

    versions = {name: _version(name) for name in ("torch", "transformers", "numpy")}
    return {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        **versions,
        "reflective_search": reflective_search.__version__,
        **_git_state(Path(reflective_search.__file__).parent),
    }


def record_executor(run_dir: Path, description: Mapping[str, Any]) -> None:
    """Note in environment.json what executes this invocation (replacing an earlier note)."""
    path = Path(run_dir) / ENVIRONMENT_FILE
    current = json.loads(path.read_text(encoding="utf-8"))
    _write_atomic(path, json.dumps({**current, "executor": dict(description)}, indent=2) + "\n")


def append_event(run_dir: Path, event: Mapping[str, Any]) -> None:
    """Append one worker event to executor.jsonl (diagnostics: the results never depend on it)."""
    with open(Path(run_dir) / EXECUTOR_LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps({**event, "at": round(time.time(), 3)}) + "\n")  # at: Unix time, seconds


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_state(where: Path) -> dict[str, Any]:
    """The commit the package was run from and whether it had local changes (None: not in git)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain", "."))}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
