"""Loader-only throughput over pipeline x num_workers x batch_size (x pin_memory on CUDA).

    pytest benchmarks/test_dataloader.py --fer-num-workers 0,1,2,4 --benchmark-json out.json
    pytest benchmarks/test_dataloader.py --fer-pipelines batched,per_image --fer-num-workers 0,1,2,4

Each round is one pass over ``--fer-epoch-images`` training images with persistent workers; worker start-up is
reported as the cold-start figure, not inside the rounds. ``batched`` gathers whole uint8 batches from memory and
transforms them per batch; ``per_image`` opens, decodes and transforms one PNG at a time in the workers (the
image-folder pipeline most users run; the folder is written once into the data cache).
"""

import pytest

from fer_bench.measure.bench import bench_dataloader


@pytest.mark.benchmark(group="dataloader")
def test_dataloader(benchmark, fer_options, fer_recorder, device, batch_size, num_workers, pipeline, pin_memory):
    bench_dataloader(benchmark, fer_options, fer_recorder, device=device, batch_size=batch_size,
                     num_workers=num_workers, pin_memory=pin_memory, pipeline=pipeline)
