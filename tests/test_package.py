"""The package's metadata in step with itself: the version in one place (fer_bench/__init__.py, which setup.cfg,
the CLI and the CHANGELOG follow), the license in setup.cfg, LICENSE and the classifiers, and the Python classifiers
from python_requires on."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import fer_bench
from fer_bench.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _metadata() -> configparser.SectionProxy:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    return cfg["metadata"]


def _classifiers() -> list[str]:
    return [line.strip() for line in _metadata()["classifiers"].splitlines() if line.strip()]


def test_the_version_lives_in_fer_bench_init(capsys):
    assert _metadata()["version"].strip() == "attr: fer_bench.__version__"
    Version(fer_bench.__version__)  # a valid version
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"fer_bench {fer_bench.__version__}"


def test_the_changelog_has_the_current_release_first():
    text = (ROOT / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[([^\]]+)\]", text, flags=re.MULTILINE)
    assert releases[0] == "Unreleased", releases
    assert releases[1] == fer_bench.__version__, f"CHANGELOG's newest release is {releases[1]}"


def test_license_file_setup_cfg_and_classifier_agree():
    assert _metadata()["license"].strip() == "MIT"
    assert "LICENSE" in _metadata()["license_files"].split()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    assert "License :: OSI Approved :: MIT License" in _classifiers()


def test_python_classifiers_start_at_python_requires():
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    requires = SpecifierSet(cfg["options"]["python_requires"])
    versions = sorted(Version(c.rsplit(" :: ", 1)[1]) for c in _classifiers()
                      if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))
    assert versions and all(v in requires for v in versions), versions
    assert Version(f"{versions[0].major}.{versions[0].minor - 1}") not in requires, \
        f"python_requires {requires} allows a Python older than the classifiers' {versions[0]}"
    minors = [v.minor for v in versions]
    assert minors == list(range(minors[0], minors[-1] + 1)), versions
