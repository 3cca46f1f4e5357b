"""Registers the fer_bench pytest plugin for this checkout's benchmarks and tests."""

pytest_plugins = ["fer_bench.plugin"]
