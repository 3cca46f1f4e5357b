"""How busy the machine was with other work while a case was timed: contention accounting from /proc.

Over the timed rounds of a case (fer_bench.measure.timing.measure opens a :class:`ContentionWindow` around them)
this module records, as shares of the machine's CPU time over the window (wall time x online CPUs, in the
kernel's own ticks from /proc/stat):

* ``other_cpu_share``: CPU time the machine spent on anything but this run: /proc/stat's busy time (user, nice,
  system, irq, softirq; guest time is inside user) less the run's own CPU time. The run is this process and
  every descendant (DataLoader workers, DDP ranks, a compile worker), read from /proc/PID/stat as utime + stime
  + cutime + cstime: a live process's own time, plus what its children that ended were reaped with, so every
  tick counts once whether a worker lives through the window or ends inside it. Under `fer-bench ab` the two
  sides take turns by design (fer_bench.measure.turns), so the run is the coordinator's whole tree: both sides;
  under torchrun or srun with several ranks, the launcher's tree on this node (:func:`resolve_own_pid`).
* ``steal_share``: time a hypervisor gave this VM's CPUs to another guest (/proc/stat's steal).
* ``runnable_mean``: the mean of ``procs_running`` (the fourth field of /proc/loadavg: tasks running or ready to
  run, machine-wide, this run's own threads and the sampler itself included), sampled every
  ``SAMPLE_INTERVAL_S`` by a daemon thread and at both ends. With ``cpus`` beside it, it says how crowded the
  run queue was; the verdict does not use it (a run's own threads fill it too).

A case is ``contended`` when ``other_cpu_share + steal_share`` exceeds ``CONTENTION_THRESHOLD`` (docs/gate.md
shows the measurement behind 10%). The gate and compare treat such a case as unreliable; ``wait_for_quiet`` lets
measure() re-measure it once the machine is quiet again (``--fer-remeasure-contended``). Where /proc cannot be
read (macOS, Windows, a sandbox) the record is ``{"measured": false, "why": ...}``.

Stdlib only; never imports torch or pytest.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

PROC_ROOT = Path("/proc")
#: A case whose other processes and steal took more than this share of the machine's CPU time is contended.
CONTENTION_THRESHOLD = 0.10
#: How often the runnable tasks are sampled while the rounds run (a daemon thread: one short read a sample).
SAMPLE_INTERVAL_S = 0.1
#: A re-measure waits for a sample of this length below the threshold, for at most MAX_QUIET_WAIT_S.
QUIET_SAMPLE_S = 1.0
MAX_QUIET_WAIT_S = 30.0


@dataclass(frozen=True)
class MachineTimes:
    """The machine's CPU time so far from /proc/stat's ``cpu`` line, in clock ticks (USER_HZ)."""

    busy: int  # user + nice + system + irq + softirq (guest is counted inside user)
    steal: int
    total: int  # busy + idle + iowait + steal: the machine's CPU time
    cpus: int  # online CPUs (cpuN lines)


@dataclass(frozen=True)
class ContentionPolicy:
    """What measure() does with a contended case (Recorder.contention builds it from --fer-remeasure-contended).

    Attributes:
        remeasure: time its rounds once more when the machine is quiet again; the new rounds replace the old.
        replace_rounds: makes given times a case's rounds in pytest-benchmark's result (the plugin's); None: a
            re-measure is not possible, and the record says so.
        max_wait_s: how long to wait for a quiet sample before giving up (the case stays contended); None:
            ``MAX_QUIET_WAIT_S``.
    """

    remeasure: bool = False
    replace_rounds: Callable[[Any, list], None] | None = None
    max_wait_s: float | None = None


def read_machine_times(root: Path = PROC_ROOT) -> MachineTimes:
    """Raises OSError or ValueError where /proc/stat is missing or not the Linux format."""
    lines = (root / "stat").read_text().splitlines()
    fields = [int(v) for v in lines[0].split()[1:9]]
    if not lines[0].startswith("cpu ") or len(fields) < 8:
        raise ValueError(f"{root / 'stat'}: no aggregate cpu line")
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq
    cpus = sum(1 for line in lines[1:] if line.startswith("cpu") and line[3:4].isdigit())
    return MachineTimes(busy=busy, steal=steal, total=busy + idle + iowait + steal, cpus=max(1, cpus))


def _parse_stat(text: str) -> tuple[int, int] | None:
    """(ppid, utime + stime + cutime + cstime) of one /proc/PID/stat line; the command name may hold spaces and
    parentheses, so the fields are counted from its last ')'."""
    rest = text[text.rfind(")") + 2:].split()
    try:
        return int(rest[1]), sum(int(v) for v in rest[11:15])
    except (IndexError, ValueError):
        return None


def read_tree_ticks(pid: int, root: Path = PROC_ROOT) -> int:
    """CPU ticks of process ``pid`` and all its descendants (a process that ends while the tree is read drops out;
    its time reaches its parent's cutime once it is reaped)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir(root):
        if not entry.name.isdigit():
            continue
        try:
            parsed = _parse_stat(Path(entry.path, "stat").read_text())
        except OSError:
            continue
        if parsed is not None:
            parents[int(entry.name)], ticks[int(entry.name)] = parsed
    if pid not in ticks:
        raise OSError(f"{root / str(pid) / 'stat'} cannot be read")
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += ticks[p]
        stack.extend(children.get(p, ()))
    return total


def read_runnable(root: Path = PROC_ROOT) -> int | None:
    """Tasks running or ready to run now (/proc/loadavg's ``running/total`` field), or None."""
    try:
        return int((root / "loadavg").read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def not_measured(why: str) -> dict:
    return {"measured": False, "why": why}


def contention_figures(before: MachineTimes, after: MachineTimes, own_ticks: int, *, wall_s: float,
                       runnable: list[int], threshold: float = CONTENTION_THRESHOLD) -> dict:
    """The record of one window from its two /proc/stat readings and the run's own ticks over it."""
    total = after.total - before.total
    if total <= 0:
        return not_measured(f"/proc/stat counted no CPU time over {wall_s:.3f} s")
    # the kernel samples the machine's and a process's times differently: a few ticks' disagreement is no load
    other = max(0, (after.busy - before.busy) - own_ticks) / total
    steal = max(0, after.steal - before.steal) / total
    return {
        "measured": True,
        "other_cpu_share": round(other, 4),
        "steal_share": round(steal, 4),
        "own_cpu_share": round(max(0, own_ticks) / total, 4),
        "runnable_mean": round(sum(runnable) / len(runnable), 2) if runnable else None,
        "runnable_max": max(runnable) if runnable else None,
        "cpus": after.cpus,
        "wall_s": round(wall_s, 3),
        "contended": other + steal > threshold,
        "threshold": threshold,
    }


def _world(env: Mapping[str, str]) -> int:
    for name in ("WORLD_SIZE", "SLURM_NTASKS"):
        try:
            return int(env[name])
        except (KeyError, ValueError):
            continue
    return 1


def resolve_own_pid(turns_active: bool, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """Whose CPU time is the run's own, and in words: this process's tree; or the parent's, where the parent
    started this process's partners beside it: `fer-bench ab` (both sides, taking turns) and a launcher's ranks
    on this node (torchrun's agent, srun's step daemon)."""
    env = os.environ if env is None else env
    if turns_active:
        return os.getppid(), "both sides of fer-bench ab (their coordinator's process tree)"
    if _world(env) > 1:
        return os.getppid(), "this node's ranks of the launch (their launcher's process tree)"
    return os.getpid(), "this process and its descendants"


class ContentionWindow:
    """The contention over one stretch of time: ``start()``, the work, ``stop()`` -> the record (a dict).

    Never raises: a machine without a readable /proc gets ``{"measured": False, "why": ...}``.
    """

    def __init__(self, *, own_pid: int | None = None, own: str = "this process and its descendants",
                 root: Path | None = None, threshold: float | None = None,
                 interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.own_pid = os.getpid() if own_pid is None else own_pid
        self.own = own
        # read when the window opens, so a test (or a platform shim) can point the module at another root
        self.root = PROC_ROOT if root is None else root
        self.threshold = CONTENTION_THRESHOLD if threshold is None else threshold
        self.interval_s = interval_s
        self._why: str | None = None
        self._before: MachineTimes | None = None
        self._own_before = 0
        self._t0 = 0.0
        self._samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "ContentionWindow":
        try:
            self._own_before = read_tree_ticks(self.own_pid, self.root)
            self._before = read_machine_times(self.root)
        except (OSError, ValueError) as exc:
            self._why = f"no readable /proc/stat and /proc/PID/stat here ({exc})"
            return self
        self._sample()
        self._t0 = time.monotonic()
        if self.interval_s > 0:
            self._thread = threading.Thread(target=self._run, name="fer-bench-contention", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        value = read_runnable(self.root)
        if value is not None:
            self._samples.append(value)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def stop(self) -> dict:
        wall = time.monotonic() - self._t0
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if self._why is not None or self._before is None:
            return not_measured(self._why or "the window was never started")
        self._sample()
        try:
            after = read_machine_times(self.root)
            own = read_tree_ticks(self.own_pid, self.root) - self._own_before
        except (OSError, ValueError) as exc:
            return not_measured(f"/proc could not be read at the end of the rounds ({exc})")
        record = contention_figures(self._before, after, own, wall_s=wall, runnable=self._samples,
                                    threshold=self.threshold)
        if record.get("measured"):
            record["own"] = self.own
        return record


def wait_for_quiet(*, own_pid: int | None = None, root: Path | None = None, threshold: float | None = None,
                   sample_s: float | None = None, max_wait_s: float | None = None,
                   sleep: Callable[[float], Any] = time.sleep) -> dict:
    """Sample the machine in ``sample_s`` windows (default ``QUIET_SAMPLE_S``; this run idle) until one is below
    ``threshold``: at most ``max_wait_s / sample_s`` samples (default ``MAX_QUIET_WAIT_S``). Returns ``quiet``
    (bool), ``waited_s`` and the last sample's record (``last``)."""
    sample_s = QUIET_SAMPLE_S if sample_s is None else sample_s
    max_wait_s = MAX_QUIET_WAIT_S if max_wait_s is None else max_wait_s
    start = time.monotonic()
    last: dict = not_measured("no sample taken")
    for _ in range(max(1, int(max_wait_s / sample_s))):
        window = ContentionWindow(own_pid=own_pid, root=root, threshold=threshold, interval_s=0).start()
        sleep(sample_s)
        last = window.stop()
        if not last.get("measured") or not last["contended"]:
            break
    quiet = bool(last.get("measured")) and not last["contended"]
    return {"quiet": quiet, "waited_s": round(time.monotonic() - start, 3), "last": last}


__all__ = ["CONTENTION_THRESHOLD", "ContentionPolicy", "ContentionWindow", "MachineTimes", "contention_figures",
           "not_measured", "read_machine_times", "read_runnable", "read_tree_ticks", "resolve_own_pid",
           "wait_for_quiet"]
