"""Full epochs: a training epoch plus the evaluation pass, over model x device x batch_size x num_workers x
precision x num_gpus x optimizer x memory_format x parallel x scaling x pipeline x compile (a compiled epoch
compiles its training step before the rounds and drops the last partial batch; its evaluation pass runs eager).

    pytest benchmarks/test_epoch.py --fer-num-workers 0,2,4,8 --fer-epoch-images 4096 --benchmark-json out.json
    pytest benchmarks/test_epoch.py --fer-parallel ddp --fer-devices cpu --fer-num-gpus 1,2 --benchmark-json out.json
    pytest benchmarks/test_epoch.py --fer-pipelines batched,per_image --fer-num-workers 0,1,2,4

Under ``--fer-parallel ddp`` one round is one training epoch of the whole set over the ranks, each rank training
its DistributedSampler share (no evaluation pass).

Records epoch time, images per second, the share of time spent waiting for data (the EfficientNet FER study's
data-loading ratio against num_workers), and accuracy, macro-F1 and per-class recall after the last epoch.
"""

import pytest

from fer_bench.measure.bench import bench_epoch


@pytest.mark.benchmark(group="epoch")
def test_epoch(benchmark, fer_options, fer_recorder, run_config, model, device, batch_size, num_workers, precision,
               num_gpus, optimizer, memory_format, parallel, scaling, pipeline, compile):
    bench_epoch(benchmark, fer_options, fer_recorder, run_config)
