"""Which folder of the storage root (``results/``) a run is saved into.

A folder is named by the hardware's slug, which is readable but not unique: cloud VMs say "AMD EPYC" for several CPU
generations, so an AVX-512 VM and an AVX2 one would share ``epyc-2c__cpu/``. A run goes into its slug's folder
while that folder holds no other hardware's runs; where it does, into the slug with what tells the machines apart
(``epyc-2c__cpu~f26m2``: fer_bench.machine.identity.distinguish_identities), and once a machine has such a folder,
its later runs follow it there. Runs already stored stay where they are: every reader matches machines by the
identity hash, wherever the file lies.
"""

from __future__ import annotations

import glob
from pathlib import Path

from fer_bench.machine.identity import (
    DISTINGUISH_SEPARATOR,
    distinguish_identities,
    distinguished_slug,
    short_hash,
)
from fer_bench.results.baseline import list_stored_runs


def list_slug_folders(root: Path, slug: str) -> list[Path]:
    """The folders of ``slug`` under ``root``: ``slug/`` and every ``slug~.../``, those that exist."""
    root = Path(root)
    found = [root / slug] + sorted(Path(p) for p in glob.glob(str(root / (glob.escape(slug) + DISTINGUISH_SEPARATOR
                                                                            + "*"))))
    return [folder for folder in found if folder.is_dir()]


def stored_identities(folder: Path) -> dict[str, dict]:
    """Identity hash -> hardware identity of the runs stored in ``folder`` (runs without a fingerprint left out)."""
    return {run.identity_hash: run.identity for run in list_stored_runs(folder) if run.identity_hash}


def choose_storage_folder(root: Path, fingerprint: dict) -> str:
    """The name of the folder under ``root`` this machine's run goes to.

    A ``slug~...`` folder holding this hardware's runs alone, if there is one; else the slug's own folder, unless
    it holds runs of other hardware; else ``slug~<what tells this hardware from those>`` (the hash's first digits
    where even that name is another hardware's).
    """
    slug, mine = fingerprint["slug"], fingerprint["identity_hash"]
    held = {folder.name: stored_identities(folder) for folder in list_slug_folders(root, slug)}
    for name, identities in held.items():
        if name != slug and set(identities) == {mine}:
            return name
    if set(held.get(slug, {})) <= {mine}:
        return slug
    others = {h: identity for identities in held.values() for h, identity in identities.items() if h != mine}
    name = distinguished_slug(slug, distinguish_identities({mine: fingerprint.get("identity") or {}, **others})[mine])
    if set(held.get(name, {})) - {mine}:
        name = distinguished_slug(slug, short_hash(mine))
    return name
