"""pytest hooks of fer_bench (registered by the root conftest.py)."""
