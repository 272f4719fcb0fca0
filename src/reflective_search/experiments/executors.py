"""Where work items run: this machine (``local``) or the actors of a Ray cluster (``ray``).

An executor is opened with the model and a *solver factory*, a picklable callable taking the
loaded model and returning ``solve(item) -> result``. Each worker loads the model once,
builds its solver, and solves the items sent to it; ``map`` yields each item's result to
the caller (the driver) as it finishes. Workers never write files: whatever the caller
persists, it persists alone.

``EXECUTORS`` maps the YAML's ``executor.kind`` to the class. Ray is imported only by
``RayExecutor`` (see ray_executor.py), so ``local`` runs never need it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

from reflective_search.experiments.spec import ExecutorSpec

SolverFactory = Callable[[Any], Callable[[Any], Any]]  # loaded model -> solve(item) -> result
EventLog = Callable[[dict[str, Any]], None]  # receives worker events (ready, lost) as JSON-able dicts


@dataclass(frozen=True, slots=True)
class Finished:
    index: int  # the item's position in the sequence given to ``map``
    item: Any  # the item as given
    result: Any  # what the worker's solver returned for it
    worker: dict[str, Any]  # who solved it: {"worker": name, "node": node id, "pid": process id}


class Executor(Protocol):
    """Opened as a context manager; leaving it (finished, error or Ctrl-C) stops every worker."""

    def describe(self) -> dict[str, Any]:
        """What runs the work, for environment.json (versions, nodes, CPUs; never host names)."""

    def map(self, items: Sequence[Any]) -> Iterator[Finished]:
        """Solve every item once; yields each as it finishes (any order)."""

    def __enter__(self) -> "Executor": ...

    def __exit__(self, *exc_info) -> None: ...


def open_executor(spec: ExecutorSpec, model_ref: str | None, factory: SolverFactory,
                  log: EventLog = lambda event: None) -> Executor:
    """The executor ``spec.kind`` names (not started: enter it)."""
    return EXECUTORS[spec.kind](spec, model_ref, factory, log)


def load_model(model_ref: str | None):
    """A model directory or shipped name; None: the shipped default (or a tiny random model)."""
    from reflective_search.default_model import load_default_model

    return load_default_model(model_ref)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch threads, restoring the caller's count after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- local: this process, or a spawn pool of processes ----------------------------------------


class LocalExecutor:
    """One worker: items run in this process. More: a ``spawn`` pool, one model per process.

    Each worker runs ``cpus_per_worker`` torch threads; a pool worker ignores SIGINT, so a
    Ctrl-C reaches only this process, which then terminates the pool.
    """

    def __init__(self, spec: ExecutorSpec, model_ref: str | None, factory: SolverFactory, log: EventLog) -> None:
        self.spec, self.model_ref, self.factory = spec, model_ref, factory

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "workers": self.spec.workers, "cpus_per_worker": self.spec.cpus_per_worker}

    def map(self, items: Sequence[Any]) -> Iterator[Finished]:
        if not items:
            return
        if min(self.spec.workers, len(items)) == 1:
            yield from self._in_process(items)
            return
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        initargs = (self.model_ref, self.factory, self.spec.cpus_per_worker)
        # Leaving the with-block (finished, Ctrl-C or error) terminates the workers.
        with context.Pool(min(self.spec.workers, len(items)), initializer=_init_pool_worker, initargs=initargs) as pool:
            yield from pool.imap_unordered(_solve_in_pool, enumerate(items))

    def _in_process(self, items: Sequence[Any]) -> Iterator[Finished]:
        with torch_threads(self.spec.cpus_per_worker):
            solve = self.factory(load_model(self.model_ref))
            worker = {"worker": "local", "node": "local", "pid": os.getpid()}
            for index, item in enumerate(items):
                yield Finished(index, item, solve(item), worker)

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc_info) -> None:
        pass


_pool_solver: Callable[[Any], Any] | None = None  # per pool process: its own model's solver


def _init_pool_worker(model_ref: str | None, factory: SolverFactory, threads: int) -> None:
    import signal

    import torch

    global _pool_solver
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    torch.set_num_threads(threads)
    _pool_solver = factory(load_model(model_ref))


def _solve_in_pool(job: tuple[int, Any]) -> Finished:
    index, item = job
    worker = {"worker": f"pool-{os.getpid()}", "node": "local", "pid": os.getpid()}
    return Finished(index, item, _pool_solver(item), worker)


def _ray_executor(spec: ExecutorSpec, model_ref: str | None, factory: SolverFactory, log: EventLog) -> Executor:
    from reflective_search.experiments.ray_executor import RayExecutor  # needs Ray: only when asked for

    return RayExecutor(spec, model_ref, factory, log)


EXECUTORS: dict[str, Callable[[ExecutorSpec, str | None, SolverFactory, EventLog], Executor]] = {
    "local": LocalExecutor,
    "ray": _ray_executor,
}
