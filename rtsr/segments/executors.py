"""Who runs the segments: a local process pool, or Ray actors across a cluster, behind one call.

    executor.run(tasks, done) -> {segment index: why it failed}

Each worker loads its own Upscaler once and keeps it for every segment it gets; a failed
segment is reported and the others go on, so that a rerun has only it left to do. A worker that
dies (SIGKILL, out of memory, a lost node) costs the segments it had in flight, which run again
on a fresh worker.
"""
from __future__ import annotations

import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Protocol

from rtsr.errors import RtsrError
from rtsr.segments.plan import Plan
from rtsr.segments.run import Record, WorkFolder, run_segment
from rtsr.video.writer import EncodeOptions

log = logging.getLogger(__name__)
Done = Callable[[Record], None]
RETRIES = 3  # fresh workers for segments whose worker died, before they count as failed


@dataclass(frozen=True)
class UpscalerSpec:
    """What a worker needs to load its own Upscaler (models do not travel between processes)."""

    model: str | None = None
    backend: str = "auto"
    device: str | None = None
    tile: int | None = None
    precision: str = "auto"
    batch: int | None = None

    def load(self):
        from rtsr.upscaler import Upscaler

        return Upscaler(self.model, backend=self.backend, device=self.device, tile=self.tile, batch=self.batch,
                        precision=self.precision)


@dataclass(frozen=True)
class SegmentTask:
    src: str
    work: str
    plan: Plan
    index: int
    encode: EncodeOptions


class Executor(Protocol):
    workers: int  # segments it runs at once (the plan makes several per worker)

    def run(self, tasks: Sequence[SegmentTask], done: Done) -> dict[int, str]:
        """Run every task, `done(record)` as each one finishes; the failed ones' reasons."""


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, RtsrError) else f"{type(exc).__name__}: {exc}"


def _setup_worker(threads: int, level: int) -> None:
    """A worker's threads and logging. Below --verbose its reader/writer stay quiet but for
    errors: what they would say of the other streams, the join says once."""
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=level, format="rtsr: %(message)s")
    if level > logging.INFO:
        logging.getLogger("rtsr.video").setLevel(logging.ERROR)


def _run(task: SegmentTask, upscaler, node: str) -> Record:
    return run_segment(Path(task.src), WorkFolder(Path(task.work)), task.plan, task.index, upscaler, task.encode,
                       node)


_worker: dict = {}  # a pool worker's own state: its spec, then its loaded Upscaler


def _pool_init(spec: UpscalerSpec, threads: int, level: int) -> None:
    _setup_worker(threads, level)
    _worker["spec"] = spec


def _pool_task(task: SegmentTask) -> Record:
    if "upscaler" not in _worker:  # loaded on the first task: a load error fails tasks, not the pool
        _worker["upscaler"] = _worker["spec"].load()
    return _run(task, _worker["upscaler"], f"{socket.gethostname()}:{os.getpid()}")


class ProcessPool:
    """`workers` spawned processes on this machine, `threads` torch threads each (default: the
    cores shared out, so that workers do not oversubscribe them)."""

    def __init__(self, spec: UpscalerSpec, workers: int, threads: int | None = None) -> None:
        if workers < 1:
            raise RtsrError("--workers must be at least 1")
        self.spec, self.workers = spec, workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)

    def run(self, tasks: Sequence[SegmentTask], done: Done) -> dict[int, str]:
        pending = {t.index: t for t in tasks}
        failures: dict[int, str] = {}
        for attempt in range(RETRIES + 1):
            if attempt:
                log.warning("a worker died: %d segment(s) go to fresh workers", len(pending))
            self._run_pool(pending, failures, done)
            if not pending:
                return failures
        failures.update({i: f"its worker died {RETRIES + 1} times" for i in pending})
        return failures

    def _run_pool(self, pending: dict[int, SegmentTask], failures: dict[int, str], done: Done) -> None:
        """One pool until it finishes or breaks; what it finished leaves `pending`."""
        pool = ProcessPoolExecutor(min(self.workers, len(pending)), mp_context=get_context("spawn"),
                                   initializer=_pool_init,
                                   initargs=(self.spec, self.threads, logging.getLogger("rtsr").getEffectiveLevel()))
        try:
            futures = {pool.submit(_pool_task, t): t for t in pending.values()}
            while futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in finished:
                    task = futures.pop(future)
                    try:
                        record = future.result()
                    except BrokenProcessPool:
                        record = WorkFolder(Path(task.work)).record(task.plan, task.index)  # done just before?
                        if record is None:
                            continue
                    except Exception as exc:
                        log.debug("segment %d failed", task.index, exc_info=exc)
                        failures[task.index] = _reason(exc)
                        del pending[task.index]
                        continue
                    del pending[task.index]
                    done(record)
        except BaseException:  # Ctrl-C, SIGTERM: the segments in flight are lost, not waited for
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()  # (Python 3.14's pool.terminate_workers(); before it, its processes)
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


class _SegmentActor:
    """A Ray actor: one per GPU (or per CPU node), its Upscaler loaded once."""

    def __init__(self, spec: UpscalerSpec, threads: int, level: int) -> None:
        import ray

        _setup_worker(threads, level)
        self.node = ray.get_runtime_context().get_node_id()
        self.upscaler = spec.load()

    def run(self, task: SegmentTask) -> Record:
        return _run(task, self.upscaler, self.node)

    def pid(self) -> int:
        return os.getpid()


def import_ray():
    try:
        import ray
    except ImportError:
        raise RtsrError("--ray needs Ray: pip install 'rtsr[ray]'") from None
    return ray


class RayExecutor:
    """Ray actors on the cluster at `address` (None: RAY_ADDRESS, else a local Ray started for the
    run): one per GPU with num_gpus=1; without GPUs, `workers` CPU actors (default one per node)
    sharing the CPUs. An actor that dies is restarted (its model reloaded) and its segment retried."""

    def __init__(self, spec: UpscalerSpec, address: str | None = None, workers: int | None = None) -> None:
        self.ray = import_ray()
        self.spec, self.address, self.requested = spec, address, workers
        self.actors: list = []
        self._started = False  # whether this executor started (and so shuts down) Ray
        self._shape: tuple[int, int, int] | None = None  # (actors, GPUs, alive nodes) of the cluster

    def _connect(self) -> tuple[int, int, int]:
        """Join (or start) Ray and size the actors from what the cluster has."""
        ray = self.ray
        if self._shape is None:
            if not ray.is_initialized():
                ray.init(address=self.address, log_to_driver=False, include_dashboard=False,
                         logging_level=logging.WARNING)
                self._started = True
            gpus = int(ray.cluster_resources().get("GPU", 0))
            nodes = sum(1 for n in ray.nodes() if n["Alive"])
            # one actor a GPU (or a CPU) at most: an actor asking for what no node has left is never
            # placed, and the run would wait on it for ever
            limit = gpus or int(ray.cluster_resources().get("CPU", 1))
            self._shape = (min(self.requested or gpus or nodes, limit), gpus, nodes)
        return self._shape

    @property
    def workers(self) -> int:
        """The actors the cluster gets (the plan cuts at least 4 segments for each)."""
        return self._connect()[0]

    def _start_actors(self) -> None:
        ray = self.ray
        count, gpus, nodes = self._connect()
        # CPU actors spread over the nodes: sized by the smallest node, so each one fits where it lands
        smallest = min(int(n["Resources"].get("CPU", 1)) for n in ray.nodes() if n["Alive"])
        cpus = 1 if gpus else max(1, smallest // -(-count // nodes))
        actor = ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES)(_SegmentActor)
        level = logging.getLogger("rtsr").getEffectiveLevel()
        self.actors = [actor.options(num_cpus=cpus, num_gpus=1 if gpus else 0, scheduling_strategy="SPREAD")
                       .remote(self.spec, cpus, level) for _ in range(count)]
        log.info("ray: %d %s actor(s) on %d node(s)", count, "GPU" if gpus else f"{cpus}-CPU", nodes)

    def run(self, tasks: Sequence[SegmentTask], done: Done) -> dict[int, str]:
        ray = self.ray
        try:
            self._start_actors()
            return self._schedule(tasks, done)
        finally:
            for actor in self.actors:
                ray.kill(actor)
            self.actors = []
            if self._started:
                ray.shutdown()
                self._started, self._shape = False, None

    def _schedule(self, tasks: Sequence[SegmentTask], done: Done) -> dict[int, str]:
        """Each free actor takes the next segment, so fast workers take more."""
        ray = self.ray
        queue, free = deque(tasks), list(self.actors)
        inflight: dict = {}
        failures: dict[int, str] = {}
        lost = dict.fromkeys((t.index for t in tasks), 0)  # times a segment's actor was gone for good
        while queue or inflight:
            while queue and free:
                actor, task = free.pop(), queue.popleft()
                inflight[actor.run.remote(task)] = (actor, task)
            if not inflight:  # every actor is gone for good
                failures.update({t.index: "no Ray worker is left to run it" for t in queue})
                break
            ready, _ = ray.wait(list(inflight), num_returns=1)
            actor, task = inflight.pop(ready[0])
            try:
                record = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:
                failures[task.index] = _reason(getattr(exc, "cause", None) or exc)
                free.append(actor)
            except ray.exceptions.RayActorError:  # restarts used up (or its node gone): another actor takes it
                lost[task.index] += 1
                if lost[task.index] > RETRIES:
                    failures[task.index] = f"its Ray workers died {lost[task.index]} times"
                else:
                    queue.append(task)
            else:
                free.append(actor)
                done(record)
        return failures
