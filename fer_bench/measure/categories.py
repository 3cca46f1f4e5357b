"""The operator categories of a profiled step (fer_bench.measure.ops), torch-free for `fer-bench compare`."""

#: What a step's self time is broken down into, in the order tables and plots show it.
OP_CATEGORIES: tuple[str, ...] = ("convolution", "matmul", "normalisation", "elementwise and activation", "pooling",
                                  "data movement and copies", "optimizer", "loss", "other")
