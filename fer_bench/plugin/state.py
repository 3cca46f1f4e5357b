"""Where the run's FerSession lives: config.stash, and the names that tell a fer_bench session from another."""

from __future__ import annotations

import pytest

from fer_bench.plugin.session import FerSession

SESSION_KEY = pytest.StashKey[FerSession]()


PLUGIN_NAME = "fer_bench.plugin"
FER_FIXTURES = frozenset({"fer_session", "fer_options", "fer_recorder", "run_config"})


def get_session(config) -> FerSession:
    return config.stash[SESSION_KEY]


def is_active(config) -> bool:
    return get_session(config).active
