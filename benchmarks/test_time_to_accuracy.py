"""Time to accuracy: train until the validation accuracy reaches a target, over model x device x batch_size x
precision x optimizer x lr_scaling, scored by MLPerf's rules.

    pytest benchmarks/test_time_to_accuracy.py --benchmark-json out.json
    pytest benchmarks/test_time_to_accuracy.py --fer-preset studies --benchmark-json studies.json
    pytest benchmarks/test_time_to_accuracy.py --fer-optimizers sgd,adam --fer-target-accuracy 0.75 --fer-repeats 5

A round is one seeded run (seeds 0..--fer-repeats - 1): its clock starts once the data is in memory, and runs through
building the model, every epoch (--fer-epoch-images images) and the evaluation after each epoch (the preset's
evaluation images), until the accuracy reaches --fer-target-accuracy or --fer-max-epochs have run. The score
(``time_to_target_s``) drops the fastest and the slowest run and averages the rest; at most one run may miss. A case
that missed the target says so (``reached_target: false``) and has no time to target. Each run's per-epoch curve
(time, loss, accuracy, macro-F1, per-class recall) is in ``extra_info["runs"]``; --fer-curve-tsv also writes it
as DAWNBench-style TSV files beside the JSON.
"""

import pytest

from fer_bench.measure.bench import bench_time_to_accuracy


@pytest.mark.benchmark(group="time_to_accuracy")
def test_time_to_accuracy(benchmark, fer_options, fer_recorder, run_config, model, device, batch_size, precision,
                          optimizer, lr_scaling):
    bench_time_to_accuracy(benchmark, fer_options, fer_recorder, run_config)
