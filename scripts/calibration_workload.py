"""The calibration workload of scripts/gate_calibration.py and scripts/malloc_noise.py: a small CNN training step.

Three 3x3 convolutions (16, 32, 64 channels) with ReLU and max-pooling, a linear head for 7 classes, SGD with
momentum, on a fixed 1x48x48 batch: about 4 to 30 ms a step on one thread for batch sizes 4 to 32. The two
scripts' child processes import it (the scripts put this folder on their PYTHONPATH), so both time the same step.
"""

import torch
from torch import nn


def create_step(batch_size):
    """A closure that runs one training step (zero_grad, forward, loss, backward, optimizer step)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 6 * 6, 7),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 1, 48, 48)
    y = torch.randint(0, 7, (batch_size,))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    return step
