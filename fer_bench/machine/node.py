"""Which node a run ran on: the name that tells apart the runs of a fleet's sibling nodes.

Never part of the hardware identity (nodes of one model share it, by design): the name is recorded beside the run,
at the results JSON's ``fer_bench.run.node`` and in the sidecar's run record, with where it came from
(``node_source``). In order: the ``--fer-node`` option, the ``FER_BENCH_NODE`` variable (tests, or machines behind
one hostname), SLURM's ``SLURMD_NODENAME``, else the hostname.
"""

from __future__ import annotations

import os
import platform
import re
import socket
from typing import Mapping

NODE_ENV = "FER_BENCH_NODE"
SLURM_NODE_ENV = "SLURMD_NODENAME"
#: Where a node name came from, first choice first.
NODE_SOURCES = ("option", "env", "slurm", "hostname")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def parse_node_name(text: str, what: str) -> str:
    """A name given by hand (``--fer-node``, ``FER_BENCH_NODE``): it goes into saved file names, so letters,
    digits, ``.``, ``_`` and ``-`` only.

    Raises:
        ValueError: one line naming ``what`` and the text.
    """
    name = str(text).strip()
    if not _NAME.fullmatch(name):
        raise ValueError(f"{what}: {text!r} is not a node name (letters, digits, '.', '_' and '-', at most 64, "
                         f"starting with a letter or digit)")
    return name


def hostname() -> str:
    return socket.gethostname() or platform.node() or "unknown"


def resolve_node(option: str | None = None, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(node name, its source): the option, else FER_BENCH_NODE, else SLURMD_NODENAME, else the hostname.

    Raises:
        ValueError: FER_BENCH_NODE is set to a name parse_node_name refuses.
    """
    if option:
        return option, "option"
    env = os.environ if environ is None else environ
    named = (env.get(NODE_ENV) or "").strip()
    if named:
        return parse_node_name(named, NODE_ENV), "env"
    slurm = (env.get(SLURM_NODE_ENV) or "").strip()
    if slurm:
        return slurm, "slurm"
    return hostname(), "hostname"


def node_file_part(node: str) -> str:
    """The node as a part of a saved file's name (a hostname's odd characters become ``-``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", node).strip("-.") or "node"
