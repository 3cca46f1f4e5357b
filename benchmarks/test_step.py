"""Step benchmarks: forward, forward plus backward, and the full training step, on a batch already on the device.

    pytest benchmarks/test_step.py --fer-models resnet18 --fer-batch-sizes 32,64 --benchmark-json out.json

Parametrized over model x device x batch_size x precision x num_gpus x memory_format x compile (x optimizer for
the steps that update weights). ``test_train_step_reference`` times the same full step as a bare hand loop (always
eager) in the same group, so every run shows the harness's own overhead.

    pytest benchmarks/test_step.py --fer-compile eager,default --fer-models fer_cnn_2block --benchmark-json out.json

``--fer-instructions`` also counts the instructions of one call of each CPU case of the three marked steps under
Valgrind (fer_bench.measure.instructions), for ``fer-bench gate --metric instructions``:

    pytest benchmarks --fer-preset ci --fer-instructions --benchmark-json out.json
"""

import pytest

from fer_bench.measure.bench import bench_step, bench_train_step_reference


@pytest.mark.fer_instructions
@pytest.mark.benchmark(group="forward")
def test_forward(benchmark, fer_options, fer_recorder, run_config, model, device, batch_size, precision, num_gpus,
                 memory_format, compile):
    bench_step(benchmark, fer_options, fer_recorder, run_config, "forward")


@pytest.mark.fer_instructions
@pytest.mark.benchmark(group="forward_backward")
def test_forward_backward(benchmark, fer_options, fer_recorder, run_config, model, device, batch_size, precision,
                          num_gpus, memory_format, compile):
    bench_step(benchmark, fer_options, fer_recorder, run_config, "forward_backward")


@pytest.mark.fer_instructions
@pytest.mark.benchmark(group="train_step")
def test_train_step(benchmark, fer_options, fer_recorder, run_config, model, device, batch_size, precision, num_gpus,
                    optimizer, memory_format, compile):
    bench_step(benchmark, fer_options, fer_recorder, run_config, "train_step")


@pytest.mark.benchmark(group="train_step")
def test_train_step_reference(benchmark, fer_options, fer_recorder, run_config, model, device, batch_size, precision,
                              num_gpus, optimizer, memory_format):
    bench_train_step_reference(benchmark, fer_options, fer_recorder, run_config)
