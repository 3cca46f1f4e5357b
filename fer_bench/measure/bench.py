"""The benchmark bodies, in one place for the modules under benchmarks/: each builds its case outside the timed
call, then hands one callable to measure().

Each gets the pytest-benchmark fixture, the run's options (BenchOptions) and its recorder (Recorder,
fer_bench.measure.context), never the pytest session. The modules under benchmarks/ stay a few lines each and call
these, so a step, a loader and an epoch are timed the same way whatever the model, device or precision. The bodies
live in steps (forward, backward, train step, the reference loop), epochs (loader pass, epoch, time to accuracy)
and ddp (the scaling step and DDP epoch).
"""

from __future__ import annotations

from fer_bench.data.dataset import take
from fer_bench.measure.ddp import bench_scaling_step
from fer_bench.measure.epochs import bench_dataloader, bench_epoch, bench_time_to_accuracy
from fer_bench.measure.steps import bench_step, bench_train_step_reference

__all__ = ["bench_dataloader", "bench_epoch", "bench_scaling_step", "bench_step", "bench_time_to_accuracy",
           "bench_train_step_reference", "take"]
