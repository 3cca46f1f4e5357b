"""Runs started by a launcher: torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or SLURM's srun
(SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODELIST, with MASTER_ADDR and MASTER_PORT from the batch
script), every rank running the same pytest command.

The plugin joins the launcher's process group once, when pytest configures (gloo: it carries only the suite's own
control messages and the DDP cases on the CPU; a CUDA case adds an NCCL group of the same ranks). Every rank must
collect the same cases in the same order, or a collective would wait forever: the plugin compares them after
collection and stops with one line if they differ. Only parallel=ddp cases run under a launcher (the ranks are
the processes of the case), only rank 0 writes the JSON and the sidecar, and the fingerprint records every rank's
host and hardware identity, so a run across different hardware says so.

Within a DDP case, rank 0 leads: before each call it broadcasts what every rank runs next (a training step, a
block of steps with or without gradient synchronisation, or the end), so all ranks make the same calls while rank
0's harness chooses the rounds; at the end every rank's step times are gathered on rank 0.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Mapping

from fer_bench.errors import FerBenchError

#: The collective timeout of the launcher's group: a rank that died fails the next collective after this.
LAUNCH_TIMEOUT_S = 600.0
#: What rank 0 broadcasts before each call of a DDP case.
STOP, STEP, SYNCED_BLOCK, NO_SYNC_BLOCK = 0, 1, 2, 3


@dataclass(frozen=True)
class LaunchInfo:
    """Where this process sits in a launched world."""

    launcher: str  # torchrun | slurm
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    node_list: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _int(env: Mapping[str, str], name: str, where: str) -> int:
    try:
        return int(env[name])
    except (KeyError, ValueError):
        raise FerBenchError(f"{where}: {name}={env.get(name)!r} is not an integer") from None


def detect_launch(env: Mapping[str, str] | None = None) -> LaunchInfo | None:
    """The launch this process belongs to, or None for a single process (no launcher, or a world of 1).

    Raises:
        FerBenchError: a launcher's variables are incomplete (one line naming the variable).
    """
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        launcher, where = "torchrun", "torchrun"
        rank, world = _int(env, "RANK", where), _int(env, "WORLD_SIZE", where)
        local = _int(env, "LOCAL_RANK", where) if "LOCAL_RANK" in env else rank
        nodes = None
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        launcher, where = "slurm", "srun"
        rank, world = _int(env, "SLURM_PROCID", where), _int(env, "SLURM_NTASKS", where)
        local = _int(env, "SLURM_LOCALID", where) if "SLURM_LOCALID" in env else 0
        nodes = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    else:
        return None
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise FerBenchError(f"{where}: rank {rank} is outside a world of {world}")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not env.get(name):
            hint = " (scripts/slurm/fer_bench.sbatch sets it from the node list)" if launcher == "slurm" else ""
            raise FerBenchError(f"{where}: rank {rank} of {world}: {name} is not set{hint}")
    return LaunchInfo(launcher, rank, world, local, env["MASTER_ADDR"], _int(env, "MASTER_PORT", where), nodes)


def join_group(info: LaunchInfo, timeout_s: float = LAUNCH_TIMEOUT_S) -> None:
    """Join the launcher's world as a gloo group (a no-op when this process already has one)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    dist.init_process_group("gloo", init_method=f"tcp://{info.master_addr}:{info.master_port}", rank=info.rank,
                            world_size=info.world_size, timeout=timedelta(seconds=timeout_s))


def leave_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def gather(obj) -> list:
    """``obj`` of every rank, in rank order, on every rank."""
    import torch.distributed as dist

    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def describe_nodes(records: list[dict]) -> dict:
    """The launch's hardware from every rank's record (host, identity hash, slug): one entry per host, and
    ``heterogeneous`` when the ranks ran on more than one hardware identity."""
    hosts: dict[str, dict] = {}
    for rank, record in enumerate(records):
        entry = hosts.setdefault(record["host"], {"host": record["host"], "ranks": [],
                                                  "identity_hash": record["identity_hash"], "slug": record["slug"]})
        entry["ranks"].append(rank)
        if entry["identity_hash"] != record["identity_hash"]:
            entry["identity_hash"] = "mixed"
    identities = {r["identity_hash"] for r in records}
    return {"nodes": list(hosts.values()), "node_count": len(hosts), "heterogeneous": len(identities) > 1,
            "identities": sorted(identities)}


def this_host() -> str:
    return socket.gethostname()


def lead(code: int, steps: int = 1) -> None:
    """Rank 0: tell every rank what to run next (a no-op outside a group)."""
    import torch
    import torch.distributed as dist

    dist.broadcast(torch.tensor([code, steps], dtype=torch.int64), src=0)


def follow() -> tuple[int, int]:
    """Another rank: wait for rank 0's next command."""
    import torch
    import torch.distributed as dist

    command = torch.zeros(2, dtype=torch.int64)
    dist.broadcast(command, src=0)
    return int(command[0]), int(command[1])
