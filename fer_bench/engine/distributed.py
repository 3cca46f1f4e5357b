"""DistributedDataParallel for one benchmark case: workers started once per case, driven round by round.

``DDPWorkers`` spawns ``world_size`` processes (torch.multiprocessing's spawn context), each of which joins a
process group (NCCL on CUDA, gloo on the CPU; a file store in a private temporary folder, so two cases or two
suites never collide on a port), builds the case's one-device training step, wraps its model in
DistributedDataParallel and waits. A round (``run``) tells every rank to run its steps and waits for all of them;
each rank times its own steps (synchronising its device), and the round's figure is the slowest rank's. Steps under
``no_sync()`` (``run(..., no_sync=True)``) skip the gradient all-reduce: the DDP step minus that step is the
communication the backward pass did not hide.

A rank that dies (killed, out of memory, a crash) fails the case, not the session: the round raises
``WorkerFailed`` naming the rank and how it ended, the other ranks (stuck in a collective with the dead one) are
stopped at once, and the store folder is removed. A rank that hangs fails the round after ``timeout_s`` (the
leader's wait for its answer, and the process group's collective timeout); ``FER_BENCH_INJECT_DDP_HANG=RANK``
makes that rank hang in its first round, for tests. An interruption (Ctrl-C, SIGTERM) while the ranks work stops
them at once too: SIGTERM, then SIGKILL 3 s later.

Under a launcher (torchrun, srun) the processes already exist: fer_bench.engine.launch joins its group instead,
and the same one-device step is wrapped in the same way (``wrap_ddp``).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from multiprocessing.connection import wait
from typing import Any

from fer_bench.errors import FerBenchError

#: How long a round may wait for its ranks, and the process group's collective timeout (seconds).
DEFAULT_TIMEOUT_S = 300.0
#: How long the workers may take to start (spawn, import torch, join the group, build the model).
START_TIMEOUT_S = 300.0
#: A test-only fault: the rank named by this variable hangs in its first round: ``FER_BENCH_INJECT_DDP_HANG=1``, or
#: ``1@8`` for the cases whose per-device batch is 8 only.
HANG_VARIABLE = "FER_BENCH_INJECT_DDP_HANG"


def _injected_hang(rank: int, per_device_batch: int) -> bool:
    value = os.environ.get(HANG_VARIABLE, "").strip()
    if not value:
        return False
    who, _, batch = value.partition("@")
    return who == str(rank) and (not batch or batch == str(per_device_batch))


class WorkerFailed(FerBenchError):
    """A DDP rank died or raised: the case fails with this message."""


@dataclass(frozen=True)
class DDPOptions:
    """DistributedDataParallel's knobs, recorded with every result (``extra_info["ddp"]``)."""

    bucket_cap_mb: float = 25.0
    gradient_as_bucket_view: bool = False
    static_graph: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def ddp_backend(device_type: str) -> str:
    return "nccl" if device_type == "cuda" else "gloo"


def usable_cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def distributed_unavailable_reason(device: str, world_size: int) -> str | None:
    """Why this machine cannot run a DDP case of ``world_size`` ranks on ``device``, or None."""
    import torch.distributed as dist

    if not dist.is_available():
        return "torch.distributed is not available in this torch build"
    if device == "cpu":
        if not dist.is_gloo_available():
            return "DistributedDataParallel on the CPU needs the gloo backend, absent from this torch build"
        from fer_bench.engine.launch import detect_launch

        try:
            if detect_launch() is not None:
                return None  # the launcher placed the ranks, over one node or several
        except FerBenchError:
            pass  # reported once by the plugin
        cores = usable_cpu_count()
        if world_size > cores:
            return f"ddp on cpu: {world_size} processes need {world_size} cores, {cores} here"
        return None
    if not dist.is_nccl_available():
        return "DistributedDataParallel on CUDA needs NCCL, absent from this torch build"
    return None  # the device axis checks the GPU count


def rank_device(device: str, rank: int) -> str:
    """The device of ``rank``: consecutive CUDA devices from the case's (``cuda:2`` with rank 1: ``cuda:3``), the
    CPU for every rank on the CPU."""
    if not device.startswith("cuda"):
        return device
    first = int(device.split(":")[1]) if ":" in device else 0
    return f"cuda:{first + rank}"


def threads_per_rank(device_type: str, world_size: int, cores: int | None = None) -> int:
    """CPU ranks share the cores (one rank per core at most, by the availability check); a CUDA rank keeps a few
    host threads."""
    cores = usable_cpu_count() if cores is None else cores
    return max(1, cores // world_size) if device_type == "cpu" else max(1, min(4, cores // world_size))


def wrap_ddp(model, device, options: DDPOptions, process_group=None):
    """``model`` (already on ``device``) in DistributedDataParallel with ``options``, in ``process_group`` (None:
    the default group)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None,
                                   process_group=process_group,
                                   bucket_cap_mb=options.bucket_cap_mb,
                                   gradient_as_bucket_view=options.gradient_as_bucket_view,
                                   static_graph=options.static_graph)


def build_rank_step(config: dict, rank: int, options: DDPOptions, process_group=None):
    """This rank's training step: the case's ``config`` (RunConfig fields) on ``rank``'s device (the current
    CUDA device is set to it), one device with its per-device batch, the model in DistributedDataParallel.
    ``config["batch_size"]`` must already be the per-device batch. Returns the Training."""
    import torch

    from fer_bench.engine.build import create_train_step
    from fer_bench.engine.config import RunConfig

    device_name = rank_device(config["device"], rank)
    if device_name.startswith("cuda"):
        torch.cuda.set_device(torch.device(device_name))
    one = RunConfig(**{**config, "device": device_name, "num_gpus": 1, "parallel": "none", "scaling": "weak"})
    training = create_train_step(one)
    training.step.model = wrap_ddp(training.step.model, training.step.device, options, process_group)
    return training


def timed_steps(step, x, y, device, steps: int, no_sync: bool = False) -> list[float]:
    """``steps`` training steps of a DDP-wrapped TrainStep, each timed to its device's completion."""
    import contextlib

    from fer_bench.engine.device import synchronize

    times = []
    for _ in range(steps):
        context = step.model.no_sync() if no_sync else contextlib.nullcontext()
        t0 = time.perf_counter()
        with context:
            step.step(x, y)
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def _epoch_loader(spec: dict, training, rank: int, world_size: int):
    """This rank's training loader for the epoch benchmark: the run's data (the synthetic set or --fer-data), its
    first ``epoch_images`` training rows, dealt to the ranks as DistributedSampler does."""
    from fer_bench.data.dataset import load_run_data, take, train_split
    from fer_bench.data.loader import create_loader

    data = load_run_data(spec.get("data_path"))
    split = train_split(data)
    train = take(data, split, spec["epoch_images"])
    on_gpu = training.step.device.type == "cuda"
    workers = spec.get("num_workers", 0)
    pipeline = spec.get("pipeline", "batched")
    return create_loader(train, split, batch_size=training.config.batch_size, train=True,
                         input_size=training.input_size, in_chans=training.in_chans, device=training.step.device,
                         transform_on_device=on_gpu and pipeline == "batched", pin_memory=on_gpu,
                         num_workers=workers, persistent_workers=workers > 0, seed=training.config.seed,
                         shard=(rank, world_size), pipeline=pipeline), len(train)


def _run_epoch(training, loader, epoch: int) -> dict:
    from fer_bench.engine.loop import train_epoch

    loader.set_epoch(epoch)
    stats = train_epoch(training.step, loader)
    return {"epoch_time_s": stats.epoch_time_s, "num_samples": stats.num_samples, "data_wait_s": stats.data_wait_s,
            "compute_s": stats.compute_s, "data_wait_fraction": stats.data_wait_fraction, "loss": stats.mean_loss}


def _worker(rank: int, world_size: int, store: str, config: dict, options: dict, conn, threads: int,
            timeout_s: float, epoch_spec: dict | None = None) -> None:
    """One rank: join the group, build the one-device step, wrap it, then serve rounds until told to stop."""
    import signal

    import torch
    import torch.distributed as dist

    def leave(signum, frame):  # the parent stops this rank: unwind, so its DataLoader workers are stopped too
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, leave)
    try:
        torch.set_num_threads(threads)
        backend = ddp_backend(config["device"].split(":")[0])
        dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout_s))
        training = build_rank_step(config, rank, DDPOptions(**options))
        x, y = training.example_batch()
        ready = {"rank": rank, "device": str(training.step.device), "backend": backend, "threads": threads,
                 "pid": os.getpid()}
        loader = None
        if epoch_spec is not None:
            loader, ready["train_images"] = _epoch_loader(epoch_spec, training, rank, world_size)
            ready.update(epoch_steps=len(loader), epoch_samples=loader.samples_per_epoch)
        conn.send(("ready", ready))
        hang = _injected_hang(rank, config["batch_size"])
        while True:
            command = conn.recv()
            if command[0] == "stop":
                break
            if command[0] == "epoch":
                conn.send(("done", _run_epoch(training, loader, command[1])))
                continue
            if command[0] == "check":
                from fer_bench.engine.ddp_check import rank_check_step

                conn.send(("done", rank_check_step(training, rank, world_size, command[1])))
                continue
            if hang:  # the injected fault: never answer, never join the collective
                while True:
                    time.sleep(3600)
            _, steps, no_sync = command
            conn.send(("done", timed_steps(training.step, x, y, training.step.device, steps, no_sync)))
    except (EOFError, KeyboardInterrupt, SystemExit):
        pass  # the parent went away or stops this rank: nothing to report to
    except BaseException as exc:  # the parent names the rank and the error
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
    finally:
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:
                pass


class DDPWorkers:
    """``world_size`` DDP ranks for one case. Use as a context manager: the ranks start on entry and are gone on
    exit, whatever happened in between."""

    def __init__(self, config, *, options: DDPOptions | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 threads: int | None = None, epoch: dict | None = None):
        self.config = config
        self.world_size = config.world_size
        self.options = options or DDPOptions()
        self.timeout_s = timeout_s
        device_type = config.device.split(":")[0]
        self.backend = ddp_backend(device_type)
        self.threads = threads or threads_per_rank(device_type, self.world_size)
        self.epoch_spec = epoch  # data_path, epoch_images, num_workers: each rank builds its sharded loader
        self.procs: list = []
        self.conns: list = []
        self.ranks: list[dict] = []
        self._folder: str | None = None

    # ----------------------------------------------------------------------------------------- lifetime
    def __enter__(self) -> "DDPWorkers":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # an error or an interruption: the ranks' work is of no use any more, stop them now
        self.close(force=exc_type is not None)

    def start(self) -> None:
        import torch.multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._folder = tempfile.mkdtemp(prefix="fer-bench-ddp-")
        store = os.path.join(self._folder, "store")
        config = {**self.config.as_dict(), "batch_size": self.config.per_device_batch_size}
        try:
            for rank in range(self.world_size):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker, name=f"fer-bench-ddp-rank{rank}",
                                   args=(rank, self.world_size, store, config, self.options.as_dict(), child,
                                         self.threads, self.timeout_s, self.epoch_spec))
                # not daemonic: a rank's DataLoader starts worker processes of its own, which a daemonic process
                # may not; close() ends the ranks, and a rank whose parent dies reads EOF and ends
                try:
                    proc.start()
                except OSError as exc:  # it died while its arguments were still being sent
                    self.procs.append(proc)
                    self.conns.append(parent)
                    self._fail(f"rank {rank} of {self.world_size} died during starting ({self._ending(rank)}; "
                               f"{type(exc).__name__})")
                child.close()
                self.procs.append(proc)
                self.conns.append(parent)
            self.ranks = self._collect("ready", START_TIMEOUT_S, "starting")
        except BaseException:
            self.close(force=True)
            raise

    def describe(self) -> dict:
        """The ``ddp`` record of a result made with these ranks: backend, world, launcher and the knobs."""
        return {"backend": self.backend, "world_size": self.world_size, "nodes": 1,
                "procs_per_node": self.world_size, "launcher": "torch.multiprocessing (spawn)",
                **self.options.as_dict()}

    def close(self, force: bool = False) -> None:
        """Stop the ranks and remove the store; safe to call twice. Politely (a stop message, 10 s to finish a
        round) unless ``force``: after a failure or an interruption every rank gets SIGTERM (a started rank
        unwinds, stopping its DataLoader workers; one still starting Python ends quietly), then SIGKILL 3 s later,
        whatever it was doing."""
        if not force:
            for conn in self.conns:
                try:
                    conn.send(("stop",))
                except (OSError, ValueError):
                    pass
            deadline = time.monotonic() + 10
            for proc in self.procs:
                proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for stop in (lambda p: p.terminate(), lambda p: p.kill()):
            alive = [p for p in self.procs if p.is_alive()]
            if not alive:
                break
            for proc in alive:
                try:
                    stop(proc)
                except (OSError, ValueError):
                    pass
            deadline = time.monotonic() + 3
            for proc in alive:
                proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for conn in self.conns:
            conn.close()
        self.procs, self.conns = [], []
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    # ----------------------------------------------------------------------------------------- rounds
    def run(self, steps: int = 1, *, no_sync: bool = False) -> list[list[float]]:
        """Every rank runs ``steps`` steps; returns each rank's step times (rank order).

        Raises:
            WorkerFailed: a rank died or raised (the other ranks are then stopped).
        """
        return self._command(("run", steps, no_sync), "a round")

    def epoch(self, number: int) -> list[dict]:
        """Every rank trains one epoch over its shard (the workers were started with ``epoch=``); returns each
        rank's epoch figures (time, samples, data wait, compute, loss)."""
        if self.epoch_spec is None:
            raise FerBenchError("DDPWorkers.epoch needs the workers started with epoch=")
        return self._command(("epoch", number), "an epoch")

    def check(self, fault: str | None = None) -> dict:
        """Every rank runs one DDP step of the correctness check (fer_bench.engine.ddp_check), before any other
        step; returns rank 0's comparison with one process's step (``CheckResult.as_dict()``). ``fault`` (a test's)
        None: each rank reads FER_BENCH_INJECT_DDP_FAULT."""
        return self._command(("check", fault), "the DDP check")[0]

    def _command(self, command: tuple, during: str) -> list:
        for rank, conn in enumerate(self.conns):
            try:
                conn.send(command)
            except (OSError, ValueError):
                self._fail(f"rank {rank} of {self.world_size} is gone ({self._ending(rank)})")
        return self._collect("done", self.timeout_s, during)

    def round(self, steps: int = 1) -> float:
        """One timed round: the slowest rank's total over ``steps`` steps (seconds)."""
        return max(sum(times) for times in self.run(steps))

    def _collect(self, kind: str, timeout_s: float, during: str) -> list:
        replies: dict[int, Any] = {}
        deadline = time.monotonic() + timeout_s
        by_conn = {conn: rank for rank, conn in enumerate(self.conns)}
        by_sentinel = {proc.sentinel: rank for rank, proc in enumerate(self.procs)}
        while len(replies) < len(self.conns):
            left = deadline - time.monotonic()
            if left <= 0:
                waiting = sorted(set(range(len(self.conns))) - set(replies))
                self._fail(f"rank(s) {', '.join(map(str, waiting))} of {self.world_size} did not answer within "
                           f"{timeout_s:.0f} s during {during}")
            pending = [c for c, r in by_conn.items() if r not in replies]
            ready = wait(pending + [s for s, r in by_sentinel.items() if r not in replies], timeout=left)
            for obj in ready:
                if obj in by_conn:
                    rank = by_conn[obj]
                    try:
                        message = obj.recv()
                    except (EOFError, OSError):
                        self._fail(f"rank {rank} of {self.world_size} died during {during} ({self._ending(rank)})")
                    if message[0] == "error":
                        dead = self._dead_ranks(exclude=rank)
                        if dead:  # its error is the other rank's death seen from a collective: name the cause
                            self._fail(f"rank {dead[0]} of {self.world_size} died during {during} "
                                       f"({self._ending(dead[0])}); rank {rank} then failed: {message[1]}")
                        self._fail(f"rank {rank} of {self.world_size} failed during {during}: {message[1]}")
                    replies[rank] = message[1]
                elif by_sentinel.get(obj) is not None and by_sentinel[obj] not in replies:
                    rank = by_sentinel[obj]
                    conn = self.conns[rank]
                    if conn.poll():  # its last words arrived before it ended
                        continue
                    self._fail(f"rank {rank} of {self.world_size} died during {during} ({self._ending(rank)})")
        return [replies[r] for r in range(len(self.conns))]

    def _dead_ranks(self, exclude: int, wait_s: float = 2.0) -> list[int]:
        """Ranks other than ``exclude`` whose process ended abnormally (a signal, a non-zero exit), waiting up to
        ``wait_s`` for one (a collective can report a peer's death before the peer's exit is visible here)."""
        deadline = time.monotonic() + wait_s
        while True:
            # a rank that reported its own error exits 0: only an abnormal end is a death
            dead = [r for r, p in enumerate(self.procs) if r != exclude and not p.is_alive() and p.exitcode]
            if dead or time.monotonic() >= deadline:
                return dead
            time.sleep(0.05)

    def _ending(self, rank: int) -> str:
        proc = self.procs[rank]
        proc.join(timeout=1)
        code = proc.exitcode
        if code is None:
            return "still running"
        if code < 0:
            import signal

            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def _fail(self, message: str) -> None:
        self.close(force=True)
        raise WorkerFailed(message)


def summarize_ranks(per_rank_rounds: list[list[float]]) -> dict:
    """Per-rank statistics of the timed rounds (each rank's round times in seconds): median, IQR, rounds, and the
    skew (slowest rank's median over the fastest's)."""
    ranks = []
    for rank, times in enumerate(per_rank_rounds):
        ordered = sorted(times)
        q1, q3 = ordered[len(ordered) // 4], ordered[(3 * len(ordered)) // 4]
        ranks.append({"rank": rank, "median_ms": statistics.median(times) * 1e3, "iqr_ms": (q3 - q1) * 1e3,
                      "rounds": len(times)})
    medians = [r["median_ms"] for r in ranks]
    return {"per_rank": ranks, "rank_skew": max(medians) / min(medians) if min(medians) > 0 else None,
            "slowest_rank": medians.index(max(medians))}
