"""Verify many specs at once on a multi-core CPU: the command's own process and worker processes share
the specs, a (model, task) cluster at a time.

Why processes: on a CPU, torch spreads one forward over the cores but not perfectly (two threads buy
about 1.5x on two cores), and the Python around the forwards (sampling inputs, drawing baseline
circuits, the subgraph path's bookkeeping) runs on one core. Two processes of one thread each keep both
cores busy. Why clusters: specs of one model and one task share a :class:`~.runner.RunCache` (the task
mean references, the full model's logits on the same inputs), so they run in one process, one after the
other, exactly as a serial run would do them. A verdict does not depend on the process it ran in: each
spec's inputs, baselines and bootstrap are seeded by the spec alone, and a task mean is the same number
to the last bit whichever cluster computed it (:data:`~.runner.REFERENCE_CHUNK`).

Workers are fresh interpreters (``python -c``, this process's ``sys.path`` first), not forks: a fork of a
process whose torch has started its thread pool can hang. Each resolves its clusters' specs itself and
sends back, over its stdout pipe, one message per claim group (the progress bar) and one per spec (its
results, or its error). A thread per worker hands out clusters, largest first, from the same list the
command's own process takes from; a worker that dies leaves its unfinished cluster to that process.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ..lang.ast import PER_INPUT_KINDS
from .spec_outcome import SpecOutcome

if TYPE_CHECKING:  # this module is imported before torch is: workers start while the command imports it
    from ..lang.resolve import ResolvedSpec
    from .runner import RunSettings

#: Full forwards of the model a claim group of each kind costs, roughly: what orders clusters, largest first.
FORWARDS_PER_GROUP = {"necessary": 14.0, "sufficient": 3.0, "minimal": 1.0, "edge": 1.0, "unneeded": 1.0}
PARTIAL_FORWARDS = 8.0  # a sufficient claim judged under random partial ablations
CHOSEN_FORWARDS = 24.0  # ... and under adversarially chosen ones (12 conditions and the gradients that pick them)


@dataclass(frozen=True)
class Cluster:
    """Specs (indices into the command's list) of one model and one task, and their estimated cost."""

    specs: tuple[int, ...]
    cost: float


def estimated_cost(resolved: "ResolvedSpec", settings: "RunSettings") -> float:
    """Full-forward equivalents of the spec's claim groups, in inputs x model weights: only an order."""
    from .runner import group_samples
    from .verifier import claim_groups

    cfg = resolved.context.model.cfg
    per_token = cfg.n_layers * cfg.d_model * (4 * cfg.d_model + 2 * cfg.d_mlp)
    total = 0.0
    for group in claim_groups(resolved):
        forwards = 0.0
        for claim in group:
            if claim.kind in PER_INPUT_KINDS:
                forwards = max(forwards, 1.0)
                continue
            forwards += FORWARDS_PER_GROUP.get(claim.kind, 1.0)
            if claim.kind == "sufficient" and settings.partial_ablations and claim.robustness != "none":
                forwards += CHOSEN_FORWARDS if claim.robustness == "adversarial" else PARTIAL_FORWARDS
        total += (2.0 + forwards) * group_samples(resolved, group, settings)
    return total * per_token


def plan_clusters(resolved_specs: Sequence["ResolvedSpec"], settings: "RunSettings") -> list[Cluster]:
    """The specs grouped by (model checkpoint, task), largest estimated cost first."""
    members: dict[tuple[str, str], list[int]] = {}
    for i, resolved in enumerate(resolved_specs):
        members.setdefault((str(resolved.context.path), resolved.task.name), []).append(i)
    clusters = [Cluster(tuple(ix), sum(estimated_cost(resolved_specs[i], settings) for i in ix))
                for ix in members.values()]
    return sorted(clusters, key=lambda c: (-c.cost, c.specs))


#: ``--jobs auto`` starts at most this many processes (each holds torch and its models: ~0.5 GB).
MAX_AUTO_JOBS = 8


def process_count(requested: int | str, threads: int, units: int, device: str) -> int:
    """Processes to verify ``units`` clusters (or spec files) with, for ``--jobs requested``: never more than
    the units; for ``auto``, one per CPU thread torch may use, :data:`MAX_AUTO_JOBS` at most; one on a GPU
    whatever was asked (processes would queue on the one device and each hold its own copy of the model)."""
    if device != "cpu":
        return 1
    wanted = min(threads, MAX_AUTO_JOBS) if requested == "auto" else requested
    return max(1, min(wanted, units))


class _Queue:
    """The clusters not yet taken, handed out largest first to whichever process asks (thread-safe)."""

    def __init__(self, clusters: Sequence[Cluster]) -> None:
        self._left = list(clusters)
        self._lock = threading.Lock()

    def take(self) -> Cluster | None:
        with self._lock:
            return self._left.pop(0) if self._left else None


def _send(stream, message) -> None:
    """One message on a pipe between the command and a worker (both ways)."""
    pickle.dump(message, stream, protocol=pickle.HIGHEST_PROTOCOL)
    stream.flush()


_BOOTSTRAP = "import sys; sys.path[:0] = {path!r}; from circuitspec.verify.worker import main; main()"


@dataclass
class _Worker:
    """One worker process and what its service thread learnt from it."""

    process: subprocess.Popen
    outcomes: dict[int, SpecOutcome] = field(default_factory=dict)
    taken: list[Cluster] = field(default_factory=list)
    failure: str = ""  # the traceback the worker sent before it stopped, when it crashed


class Workers:
    """Worker processes, started as early as the command knows it may want them: each imports torch and
    circuitspec (about 3 s) while this process does the same and resolves the specs, then waits for its
    job. :meth:`verify` hands them the specs; :meth:`close` stops any still waiting."""

    def __init__(self, count: int) -> None:
        command = [sys.executable, "-c", _BOOTSTRAP.format(path=[p for p in sys.path if p])]
        self.workers: list[_Worker] = []
        for _ in range(count):
            try:
                process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=os.getcwd())
            except OSError:  # no processes to be had: fewer workers, or none (the command's process does it all)
                break
            self.workers.append(_Worker(process))

    def __len__(self) -> int:
        return len(self.workers)

    def close(self) -> None:
        """Stop the workers that got no job (no-op after :meth:`verify`, whose workers stop by themselves)."""
        for worker in self.workers:
            if worker.process.poll() is None:
                _stop(worker)
                _wait_or_kill(worker)
        self.workers = []

    def verify(self, resolved_specs: Sequence["ResolvedSpec"], clusters: Sequence[Cluster], jobs: int, threads: int,
               verify_here: Callable[[int], SpecOutcome], on_group: Callable[[], None], job: dict,
               note: Callable[[str], None]) -> dict[int, SpecOutcome]:
        """Every spec's outcome, verified by this process (``verify_here``) and ``jobs - 1`` of the workers
        (the rest are stopped). Each process runs torch on ``threads // jobs`` threads (at least one), this
        one on all ``threads`` again once the workers are done. ``job``: what a worker needs to resolve the
        specs as this process did (files, settings, task modules). ``note``: where a worker's failure is
        reported (its unfinished clusters are then verified here)."""
        import torch

        queue = _Queue(clusters)
        active, spare = self.workers[: jobs - 1], self.workers[jobs - 1 :]
        for worker in spare:
            _stop(worker)
        self.workers = []  # from here on they stop by themselves
        per_job = max(1, threads // (len(active) + 1))
        services = []
        outcomes: dict[int, SpecOutcome] = {}
        try:
            for worker in active:
                try:
                    _send(worker.process.stdin, {**job, "threads": per_job})
                except OSError:  # it has stopped already: its thread still reads why, if it said
                    pass
                service = threading.Thread(target=_serve, args=(worker, queue, on_group), daemon=True)
                service.start()
                services.append(service)
            torch.set_num_threads(per_job if services else threads)
            while (cluster := queue.take()) is not None:
                for index in cluster.specs:
                    if not any(s.is_alive() for s in services):  # the workers are done: this process alone
                        torch.set_num_threads(threads)
                    outcomes[index] = verify_here(index)
            for service in services:
                service.join()
        finally:
            torch.set_num_threads(threads)
            for worker in active:  # done (each stopped when the clusters ran out), or interrupted
                if worker.process.poll() is None:
                    worker.process.kill()
                    worker.process.wait()
            for worker in spare:  # told to stop before the work began
                _wait_or_kill(worker)
        for worker in active:
            outcomes.update(worker.outcomes)
            missing = [i for c in worker.taken for i in c.specs if i not in worker.outcomes]
            lines = worker.failure.strip().splitlines()
            why = lines[-1] if lines else f"exit code {worker.process.returncode}"
            if missing:
                names = ", ".join(Path(resolved_specs[i].file).name for i in missing)
                note(f"a verify worker stopped ({why}); verifying {names} in the command's own process")
                for index in missing:
                    outcomes[index] = verify_here(index)
            elif lines:  # it failed before taking any work: the others did it, only slower
                note(f"a verify worker failed to start ({why}); its share was verified by the other processes")
        return outcomes


def _wait_or_kill(worker: _Worker, timeout: float = 10) -> None:
    """Wait for a worker told to stop; kill it if it has not stopped within ``timeout`` seconds."""
    try:
        worker.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        worker.process.wait()


def _stop(worker: _Worker) -> None:
    try:
        _send(worker.process.stdin, None)
        worker.process.stdin.close()
    except OSError:
        pass


def _serve(worker: _Worker, queue: _Queue, on_group: Callable[[], None]) -> None:
    """Answer one worker until it stops: clusters when it asks, progress and outcomes as they come."""
    stream = worker.process.stdout
    try:
        while True:
            try:
                kind, *body = pickle.load(stream)
            except (EOFError, pickle.UnpicklingError, OSError, ValueError):
                return
            if kind == "ready":
                cluster = queue.take()
                if cluster is not None:
                    worker.taken.append(cluster)
                _send(worker.process.stdin, None if cluster is None else cluster.specs)
            elif kind == "group":
                on_group()
            elif kind == "spec":
                index, outcome = body
                worker.outcomes[index] = outcome
            elif kind == "crash":
                worker.failure = body[0]
    except OSError:
        return
    finally:
        worker.process.wait()
