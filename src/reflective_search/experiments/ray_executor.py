"""Executor kind ``ray``: work items solved by actors on a Ray cluster.

Each worker is an actor holding ``cpus_per_worker`` CPUs (and ``gpus_per_worker`` GPUs):
it loads the model once, with that many torch threads, and solves one item at a time.
When the cluster has room for every worker, all of them load the model before any item
is sent (a node that cannot load it fails the run before any work; items spread over all
workers); otherwise items go to workers as they come up. The driver (this process) keeps
every item it has not yet received a result for; an actor that dies (SIGKILL, a lost
node) costs only its current item, which goes back to the front of the queue for the
next free worker, while a replacement actor starts. A result is yielded once, when it
arrives, so nothing is written twice.

The model reaches workers that do not share this disk through Ray's object store: a
model folder is read here and its bytes shipped (``ray.put``) to each actor, which writes
them to a temporary folder, loads from it and deletes it. A shipped model (by name) is in
the package every node has installed, so it travels as its name.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from reflective_search.errors import ConfigError, ModelError
from reflective_search.experiments.executors import EventLog, Finished, SolverFactory
from reflective_search.experiments.spec import ExecutorSpec

INSTALL_HINT = "pip install 'reflective_search[ray]' (Ray 2.60.0)"
CONNECT_TIMEOUT_S = 3.0  # how long an address may take to accept a TCP connection
LOST_WORKERS_PER_WORKER = 2  # the run stops once this many x workers actors have died


def import_ray():
    """The ray module, or a one-line ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"executor.kind: ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


@dataclass(slots=True)
class _Slot:
    """One actor as the driver tracks it (mutated by the dispatch loop only)."""

    name: str  # w0, w1, ... (replacements get new names)
    actor: Any  # the Ray actor handle
    info: dict[str, Any]  # {"worker", "node", "pid"}; node and pid known once it is ready
    ready: bool = False  # its model is loaded
    job: tuple[int, Any] | None = None  # (index, item) it holds


class RayExecutor:
    """Actors on the Ray cluster at ``spec.address`` (None: a private Ray on this machine)."""

    def __init__(self, spec: ExecutorSpec, model_ref: str | None, factory: SolverFactory, log: EventLog) -> None:
        self.ray = import_ray()
        self.spec, self.model_ref, self.factory, self.log = spec, model_ref, factory, log
        self._slots: list[_Slot] = []  # every actor started, dead ones included
        self._pending: dict[Any, _Slot] = {}  # ObjectRef of a ready() or solve() call -> its actor
        self._lost = 0
        self._owns_ray = False  # whether close() shuts Ray down (we started or joined it)
        self._files = None  # ObjectRef of the model folder's files, or None

    # -- lifetime ---------------------------------------------------------------------------

    def __enter__(self) -> "RayExecutor":
        if not self.ray.is_initialized():
            self._init_ray()
            self._owns_ray = True
        self._check_fits()
        if self.model_ref is not None and Path(self.model_ref).is_dir():
            self._files = self.ray.put(folder_files(Path(self.model_ref)))
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            for slot in self._slots:
                self.ray.kill(slot.actor, no_restart=True)
        finally:
            if self._owns_ray:
                self.ray.shutdown()

    def _init_ray(self) -> None:
        address = self.spec.address
        check_reachable(address)
        options: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.ERROR)
        if address is None:  # a private Ray sized so that every asked-for worker fits
            options.update(num_cpus=max(os.cpu_count() or 1, self.spec.workers * self.spec.cpus_per_worker),
                           include_dashboard=False)
        try:  # "local" makes Ray start a new instance even where RAY_ADDRESS or a running one is found
            self.ray.init(address=address or "local", **options)
        except ConnectionError as exc:
            raise ConfigError(f"executor.address {address}: no Ray cluster found ({_first_line(exc)}): start one "
                              "with `ray start --head` or give its host:port") from None

    def _check_fits(self) -> None:
        """Refuse a worker no node can hold (it would wait forever)."""
        nodes = self._nodes()
        cpus, gpus = self.spec.cpus_per_worker, self.spec.gpus_per_worker
        if not any(n["cpus"] >= cpus and n["gpus"] >= gpus for n in nodes):
            have = ", ".join(f"{n['cpus']:g} CPUs {n['gpus']:g} GPUs" for n in nodes)
            raise ConfigError(f"executor: no Ray node has {cpus} CPUs and {gpus:g} GPUs for a worker (nodes: {have}): "
                              "lower executor.cpus_per_worker or executor.gpus_per_worker")

    def _nodes(self) -> list[dict[str, Any]]:
        alive = [n for n in self.ray.nodes() if n["Alive"]]
        return [{"node": n["NodeID"], "cpus": n["Resources"].get("CPU", 0.0), "gpus": n["Resources"].get("GPU", 0.0)}
                for n in alive]

    def describe(self) -> dict[str, Any]:
        nodes = self._nodes()
        return {"kind": "ray", "ray": self.ray.__version__, "workers": self.spec.workers,
                "cpus_per_worker": self.spec.cpus_per_worker, "gpus_per_worker": self.spec.gpus_per_worker,
                "nodes": nodes, "cpus": sum(n["cpus"] for n in nodes), "gpus": sum(n["gpus"] for n in nodes)}

    # -- dispatch -----------------------------------------------------------------------------

    def map(self, items: Sequence[Any]) -> Iterator[Finished]:
        queue: deque[tuple[int, Any]] = deque(enumerate(items))
        count = min(self.spec.workers, len(items))
        fit = self._room_for(count)
        for _ in range(count):
            self._start_worker()
        if fit:  # all can start now: every model loads (or fails) before any item is sent
            self._await_ready(queue)
        for slot in self._slots:
            if slot.ready and slot.job is None and queue:
                self._send(slot, queue.popleft())
        while queue or any(slot.job for slot in self._pending.values()):
            [ref], _ = self.ray.wait(list(self._pending), num_returns=1)
            slot = self._pending.pop(ref)
            finished = self._settle(slot, ref, queue)
            if slot.ready and slot.job is None and queue:  # before the caller writes: the worker keeps busy
                self._send(slot, queue.popleft())
            if finished is not None:
                yield finished

    def _room_for(self, count: int) -> bool:
        """Whether the cluster has the resources free for ``count`` workers right now."""
        free = self.ray.available_resources()
        return (free.get("CPU", 0.0) >= count * self.spec.cpus_per_worker
                and free.get("GPU", 0.0) >= count * self.spec.gpus_per_worker)

    def _await_ready(self, queue: deque) -> None:
        """Wait until every started worker has loaded its model (a lost one is replaced and waited for)."""
        while starting := [ref for ref, slot in self._pending.items() if not slot.ready]:
            [ref], _ = self.ray.wait(starting, num_returns=1)
            self._settle(self._pending.pop(ref), ref, queue)

    def _start_worker(self) -> None:
        cls = self.ray.remote(num_cpus=self.spec.cpus_per_worker, num_gpus=self.spec.gpus_per_worker,
                              max_restarts=0, max_task_retries=0)(SolverActor)
        actor = cls.remote(self.model_ref, self._files, self.factory, self.spec.cpus_per_worker)
        slot = _Slot(f"w{len(self._slots)}", actor, {"worker": f"w{len(self._slots)}"})
        self._slots.append(slot)
        self._pending[actor.ready.remote()] = slot

    def _send(self, slot: _Slot, job: tuple[int, Any]) -> None:
        slot.job = job
        self._pending[slot.actor.solve.remote(job[1])] = slot

    def _settle(self, slot: _Slot, ref: Any, queue: deque) -> Finished | None:
        """Take one finished call: a worker became ready, finished its item, or died."""
        try:
            value = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            self._lose(slot, exc, queue)
            return None
        except self.ray.exceptions.RayTaskError as exc:  # the solver raised: the run stops with its error
            raise _cause(exc) from None
        if not slot.ready:
            self._on_ready(slot, *value)
            return None
        (index, item), slot.job = slot.job, None
        return Finished(index, item, value, slot.info)

    def _on_ready(self, slot: _Slot, error: str | None, where: dict[str, Any]) -> None:
        slot.info.update(where)
        if error is not None:
            raise ModelError(f"Ray worker {slot.name} (node {where['node'][:12]}) could not load the model: {error}")
        slot.ready = True
        self.log({"event": "ready", **slot.info})

    def _lose(self, slot: _Slot, exc: Exception, queue: deque) -> None:
        """A dead actor: its item goes back to the front of the queue; a replacement starts."""
        self._lost += 1
        self.log({"event": "lost", **slot.info, "item": slot.job[0] if slot.job else None, "error": _first_line(exc)})
        if slot.job is not None:
            queue.appendleft(slot.job)
        slot.ready, slot.job = False, None  # dead: never sent anything again
        if self._lost > LOST_WORKERS_PER_WORKER * self.spec.workers:
            raise ConfigError(f"executor: {self._lost} Ray workers died (last: {_first_line(exc)}): "
                              "check the cluster's nodes and memory (`ray status`)")
        self._start_worker()


class SolverActor:
    """The body of a Ray worker (wrapped by ``ray.remote`` at run time): one model, many items."""

    def __init__(self, model_ref: str | None, files: dict[str, bytes] | None, factory: SolverFactory,
                 threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.error: str | None = None  # why the model could not be loaded (reported by ready())
        try:
            self.solve_item = factory(_load_on_worker(model_ref, files))
        except Exception as exc:  # anything: the driver reports it as one line and stops
            self.error = f"{type(exc).__name__}: {_first_line(exc)}"

    def ready(self) -> tuple[str | None, dict[str, Any]]:
        import ray

        return self.error, {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def solve(self, item: Any) -> Any:
        return self.solve_item(item)


def _load_on_worker(model_ref: str | None, files: dict[str, bytes] | None):
    """The model from its shipped files (a temporary folder, removed once loaded) or by name."""
    import shutil
    import tempfile

    import ray
    import torch

    from reflective_search.experiments.executors import load_model

    if files is None:
        model = load_model(model_ref)
    else:
        folder = Path(tempfile.mkdtemp(prefix="reflective-model-"))
        try:
            write_folder(folder, files)
            model = load_model(str(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return model.to(torch.device("cuda")) if ray.get_gpu_ids() else model


# -- small pieces ------------------------------------------------------------------------------


def folder_files(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` by its relative path (what a worker rebuilds the folder from)."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def write_folder(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def check_reachable(address: str | None) -> None:
    """A ``host:port`` address must accept a connection within seconds (Ray itself retries for long)."""
    if address is None or address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f'executor.address {address!r}: expected "host:port", "auto" or null')
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(f"executor.address {address}: no Ray cluster answers there ({exc.strerror or exc}): "
                          "start one with `ray start --head` or fix the address") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _cause(exc: Exception) -> BaseException:
    """The exception a Ray task raised, unwrapped (so our one-line errors stay one line)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc
