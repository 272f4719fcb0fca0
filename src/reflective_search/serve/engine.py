"""One engine thread owns the model: every request's search joins its running batch.

HTTP handlers never touch the model. A handler ``submit``s a ``Job`` (a problem and its
search overrides) and waits on the job's future. The engine thread loops:

    admit    -> queued jobs become searches (``ReflectiveSearch.search``, as ``solve`` builds
                them, over the one shared expander); their first calls are submitted
    cancel   -> jobs whose client went away leave: their call is cancelled, their tree's KV freed
    step     -> one forward over every call in flight (continuous batching)
    hand back-> each search whose call finished gets its expansions and submits its next call;
                a finished search resolves its job's future with its Solution

Each job keeps its own ``search.driver.Run`` (one search), so the driver's bookkeeping
(releasing a finished or failed tree's KV) is the one ``run_searches`` uses; this loop adds
only what a server needs: admission between forwards, cancellation, and per-job futures.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Mapping

from reflective_search.errors import ConfigError, ProblemError
from reflective_search.facade import ReflectiveSearch
from reflective_search.search.driver import Run
from reflective_search.solution import Solution


class QueueFull(Exception):
    """The engine holds ``queue_limit`` jobs already."""


class Stopping(Exception):
    """The engine is stopping and admits nothing new."""


class Cancelled(Exception):
    """The job was cancelled (its client went away, or the server stopped)."""


@dataclass(slots=True, eq=False)
class Job:
    """One request's search, from submission to its Solution."""

    problem: str
    overrides: Mapping[str, Any]  # its search config, as overrides of the model's defaults
    future: Future = field(default_factory=Future)  # resolves to a Solution, or the job's error
    cancelled: bool = False  # set by the handler whose client went away; read by the engine thread
    search: ReflectiveSearch | None = None  # once admitted
    run: Run | None = None  # its one search's driver state, once admitted
    started: float = 0.0  # perf_counter at admission


class SearchEngine:
    """The engine thread and its queue. ``submit``/``cancel``/``stop`` are thread-safe.

    Args:
        model: the reflective model (used by the engine thread only).
        expander: the shared expander every search runs on (``submit``/``step``/``take``).
        queue_limit: most jobs waiting or searching at once.
    """

    def __init__(self, model, expander, queue_limit: int) -> None:
        if not hasattr(expander, "submit"):
            raise ConfigError("serve needs the shared expander (expander: shared); the reference expander "
                              "cannot batch concurrent searches")
        self.model = model
        self.expander = expander
        self.queue_limit = queue_limit
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._held = 0  # jobs submitted and not yet resolved
        self._lock = threading.Lock()
        self._stopping = False  # admit nothing new
        self._halt = False  # end the loop (cancelling what is left)
        self._tickets: dict[int, Job] = {}  # ticket -> the job whose call it is (engine thread only)
        self._thread = threading.Thread(target=self._loop, name="search-engine", daemon=True)
        self.crashed: BaseException | None = None  # an error of the loop itself (not of a search)
        self.cancelled = 0  # jobs dropped because their client went away

    # -- the handlers' side --------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> Job:
        """Queue a job; QueueFull past the limit, Stopping once stopping. Mutates the queue."""
        with self._lock:
            if self._stopping or self.crashed is not None:
                raise Stopping("the server is stopping")
            if self._held >= self.queue_limit:
                raise QueueFull(f"{self._held} requests are already queued or searching (queue_limit)")
            self._held += 1
        job.future.add_done_callback(self._release_hold)
        self._queue.put(job)
        return job

    def cancel(self, job: Job) -> None:
        """Ask the engine thread to drop ``job`` (its client went away). Thread-safe."""
        job.cancelled = True
        self._queue.put(None)  # wake an idle loop

    @property
    def held(self) -> int:
        return self._held

    def stop(self, timeout: float) -> bool:
        """Admit nothing more, let jobs in flight finish for up to ``timeout`` seconds, then
        cancel the rest and end the thread. Whether every job finished by itself."""
        with self._lock:
            self._stopping = True
        deadline = time.monotonic() + timeout
        while self._held and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.05)
        finished = not self._held
        self._halt = True
        self._queue.put(None)
        self._thread.join(timeout=max(1.0, timeout))
        return finished

    def _release_hold(self, _future: Future) -> None:
        with self._lock:
            self._held -= 1

    # -- the engine thread ---------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while not self._halt:
                self._admit(block=not self._tickets)
                self._drop_cancelled()
                if self._tickets:
                    self._step()
        except BaseException as error:  # noqa: BLE001 - the loop itself broke: fail every job, say why
            self.crashed = error
        finally:
            self._cancel_all()

    def _admit(self, block: bool) -> None:
        """Start every queued job (waiting a little for one when idle). Mutates the jobs."""
        try:
            job = self._queue.get(timeout=0.2) if block else self._queue.get_nowait()
            while True:
                if job is not None and not job.cancelled:
                    self._start(job)
                elif job is not None:
                    self.cancelled += 1
                    job.future.set_exception(Cancelled("cancelled before it started"))
                job = self._queue.get_nowait()
        except queue.Empty:
            return

    def _start(self, job: Job) -> None:
        """Build the job's search as ``solve`` would and submit its first call."""
        try:
            job.search = ReflectiveSearch(self.model, dict(job.overrides), expander=self.expander)
            check_prompt(self.model, job.problem)
            job.run = Run([job.search.search(job.problem)], self.expander, [None])
        except Exception as error:  # noqa: BLE001 - this request's own failure
            job.future.set_exception(error)
            return
        job.started = time.perf_counter()
        self._advance(job, None)

    def _advance(self, job: Job, sent) -> None:
        """Send the job's search its expansions; submit its next call, or resolve its future."""
        run = job.run
        call = run.advance(0, sent)
        if call is not None:
            try:
                self._tickets[self.expander.submit(call.requests, call.sampling)] = job
                return
            except Exception as error:  # noqa: BLE001 - refused up front (a path that fills the context)
                run.pending.pop(0)
                run.fail(error, call)
        self._resolve(job)

    def _resolve(self, job: Job) -> None:
        run = job.run
        if run.errors:
            job.future.set_exception(run.errors[0])
            return
        seconds = time.perf_counter() - job.started
        job.future.set_result(job.search.solution(job.problem, run.outcomes[0], (seconds, 0.0)))

    def _drop_cancelled(self) -> None:
        """Jobs whose client went away leave the batch: call cancelled, tree's KV freed."""
        for ticket, job in list(self._tickets.items()):
            if job.cancelled:
                self.cancelled += 1
                self._drop(ticket, job, Cancelled("the client went away"))

    def _drop(self, ticket: int, job: Job, error: BaseException) -> None:
        del self._tickets[ticket]
        self.expander.cancel(ticket)
        job.run.release_unfinished()
        if not job.future.done():
            job.future.set_exception(error)

    def _step(self) -> None:
        """One forward; hand every finished call back to its search. A failed forward (the
        engine reset its arena) fails the jobs in flight, and the loop goes on."""
        try:
            self.expander.step()
        except Exception as error:  # noqa: BLE001 - e.g. out of memory: these jobs fail, the server lives
            for ticket, job in list(self._tickets.items()):
                self._drop(ticket, job, error)
            return
        for ticket in list(self._tickets):
            expansions = self.expander.take(ticket)
            if expansions is not None:
                self._advance(self._tickets.pop(ticket), expansions)

    def _cancel_all(self) -> None:
        for ticket, job in list(self._tickets.items()):
            self._drop(ticket, job, Cancelled("the server stopped"))
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None and not job.future.done():
                job.future.set_exception(Cancelled("the server stopped"))


def check_prompt(model, problem: str) -> None:
    """Refuse an empty problem, or one whose prompt leaves the model no room to answer."""
    from reflective_search.model.reflective import check_problem

    check_problem(problem)
    try:
        model.encode_prompt(problem)
    except ProblemError as error:  # the one thing encode_prompt refuses: a prompt that fills the context
        raise PromptTooLong(str(error)) from None


class PromptTooLong(ProblemError):
    """The prompt fills the model's context."""


def live_segments(expander) -> int:
    """KV segments the arena holds for trees still searching (0 when nothing is in flight)."""
    return len(expander.arena._segments)  # the arena keeps no public count; read-only here
