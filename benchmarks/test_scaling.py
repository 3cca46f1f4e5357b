"""Scaling benchmarks: the training step spread over devices or processes, with explicit batch semantics.

    pytest benchmarks/test_scaling.py --fer-parallel ddp --fer-devices cpu --fer-num-gpus 1,2 --benchmark-json out.json
    torchrun --standalone --nproc-per-node 2 -m pytest benchmarks -k ddp --benchmark-json out.json

Parametrized over model x device x batch_size x precision x num_gpus x parallel x scaling (x optimizer):
``parallel`` dp is nn.DataParallel over num_gpus CUDA devices, ddp is DistributedDataParallel over num_gpus ranks
(NCCL on CUDA; on the CPU, num_gpus gloo processes sharing the cores); ``scaling`` weak keeps batch_size per
device (global batch = batch_size x num_gpus), strong keeps the global batch (batch_size, split). Every result
records per_device_batch_size, global_batch_size, scaling_mode and world_size, and samples_per_s is the global
batch over the step time; a ddp result also records each rank's statistics, their skew and the communication
the backward pass did not hide.
"""

import pytest

from fer_bench.measure.bench import bench_scaling_step


@pytest.mark.benchmark(group="scaling")
def test_scaling_step(benchmark, fer_options, fer_recorder, run_config, model, device, batch_size, precision, num_gpus,
                      optimizer, memory_format, parallel, scaling):
    bench_scaling_step(benchmark, fer_options, fer_recorder, run_config)
