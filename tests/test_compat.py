"""The pytest / pytest-benchmark pairs the plugin is tested with (dev.py's COMPAT_PAIRS).

`python3 dev.py compat` and tox.ini's environments of the same names run this file with each pair: it checks that
the run imports the pair it names, also in the subprocesses pytester starts; in the main suite it checks .venv's
pair against setup.cfg. It also keeps dev.py's list, tox.ini's environments and setup.cfg's requirements in step.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_benchmark
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("pytest", "pytest-benchmark")


def _dev():
    spec = importlib.util.spec_from_file_location("fer_bench_dev", ROOT / "dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _setup_cfg_requirements() -> dict[str, Requirement]:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    lines = [line.strip() for line in cfg["options"]["install_requires"].splitlines()]
    reqs = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return {req.name: req for req in reqs if req.name in NAMES}


def _tox_ini() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "tox.ini")
    return cfg


def _pins(pair) -> list[str]:
    return [f"{name}=={version}" for name, version in zip(NAMES, pair)]


VERSIONS = """
import importlib.metadata, json, pytest, pytest_benchmark
print(json.dumps([pytest.__version__, pytest_benchmark.__version__,
                  importlib.metadata.version("pytest"), importlib.metadata.version("pytest-benchmark")]))
"""


def test_run_uses_the_pair_it_names():
    """A compat run tests the pair it names (in this process and in pytester's subprocesses); else .venv's pair is
    one that setup.cfg allows."""
    here = [pytest.__version__, pytest_benchmark.__version__,
            importlib.metadata.version("pytest"), importlib.metadata.version("pytest-benchmark")]
    child = subprocess.run([sys.executable, "-c", VERSIONS], capture_output=True, text=True, check=True)
    assert json.loads(child.stdout) == here
    pins = os.environ.get("FER_BENCH_COMPAT_PAIR")
    if pins:
        assert _pins(here[:2]) == pins.split(), f"FER_BENCH_COMPAT_PAIR={pins}, but this run imports {here}"
    else:
        reqs = _setup_cfg_requirements()
        for name, version in zip(NAMES, here[:2]):
            assert reqs[name].specifier.contains(version, prereleases=True), f"{name} {version}: {reqs[name]}"


def test_pairs_are_allowed_by_setup_cfg_and_reach_its_lowest_versions():
    """setup.cfg allows every tested pair, and no version below the oldest tested minor release."""
    pairs = _dev().COMPAT_PAIRS
    reqs = _setup_cfg_requirements()
    assert sorted(reqs) == sorted(NAMES)
    for pair in pairs:
        for name, version in zip(NAMES, pair):
            assert reqs[name].specifier.contains(version), f"{name} {version} is tested but setup.cfg has {reqs[name]}"
    for i, name in enumerate(NAMES):
        oldest = min(Version(pair[i]) for pair in pairs)
        major, minor = oldest.release[:2]
        below = f"{major}.{minor - 1}.999" if minor else f"{major - 1}.999"
        assert not reqs[name].specifier.contains(below), \
            f"setup.cfg's {reqs[name]} allows {name} {below}, older than the oldest tested ({oldest})"


def test_tox_has_an_environment_per_pair():
    dev = _dev()
    tox = _tox_ini()
    names = [dev.pair_name(*pair) for pair in dev.COMPAT_PAIRS]
    assert len(set(names)) == len(names), names
    envs = sorted(s.removeprefix("testenv:") for s in tox.sections() if s.startswith("testenv:pt"))
    assert envs == sorted(names)
    for name, pair in zip(names, dev.COMPAT_PAIRS):
        section = tox[f"testenv:{name}"]
        assert section["deps"].split() == _pins(pair), name
        key, _, value = section["setenv"].strip().partition("=")
        assert (key.strip(), value.split()) == ("FER_BENCH_COMPAT_PAIR", _pins(pair)), name
        commands = section["commands"].split()
        assert commands[0] == "pytest", name
        assert sorted(c for c in commands[1:] if c.startswith("tests/")) == sorted(
            dev.COMPAT_TESTS + [p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").glob("test_compat*.py")])
