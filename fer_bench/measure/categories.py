"""The operator categories of a profiled step (fer_bench.measure.ops): re-exported from fer_bench.op_categories, their
torch-free home, so code that imports them from here keeps working."""

from fer_bench.op_categories import OP_CATEGORIES

__all__ = ["OP_CATEGORIES"]
