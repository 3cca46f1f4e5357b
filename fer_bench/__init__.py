"""fer_bench: time facial-expression-recognition CNN training across hardware."""

__version__ = "0.2.0"

from fer_bench.errors import FerBenchError  # noqa: E402

__all__ = ["FerBenchError", "__version__"]
