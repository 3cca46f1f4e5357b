"""The operator categories a profiled step's self time is broken down into: vocabulary shared by the profiler
(fer_bench.measure.ops) and the ops view of `fer-bench compare`, here below both so that neither imports the
other (and compare never imports torch)."""

#: What a step's self time is broken down into, in the order tables and plots show it.
OP_CATEGORIES: tuple[str, ...] = ("convolution", "matmul", "normalisation", "elementwise and activation", "pooling",
                                  "data movement and copies", "optimizer", "loss", "other")
