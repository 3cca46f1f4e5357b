"""TrainStep: forward only, forward plus backward, and the full step, each callable on its own for timing."""

from __future__ import annotations

import torch
from torch import nn

from fer_bench.engine.precision import PrecisionPolicy


class TrainStep:
    """One model, optimizer and precision policy on one device.

    Each phase method runs on a batch already on the device and returns without synchronising, so the caller
    decides where the timed region ends (see ``fer_bench.engine.device.synchronize``).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, policy: PrecisionPolicy,
                 device: torch.device, *, channels_last: bool = False, loss_fn: nn.Module | None = None):
        self.model = model
        #: The eager module: FLOP counting and the reference loop use it. ``model`` is the same object unless
        #: fer_bench.engine.compile.compile_train_step made it ``torch.compile(eager_model)`` (shared parameters).
        self.eager_model = model
        #: The compile axis's value this step runs in ("eager" unless compile_train_step compiled it) and how.
        self.compile_mode = "eager"
        self.compile_settings: dict = {}
        self.optimizer = optimizer
        self.policy = policy
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.loss_fn = loss_fn or nn.CrossEntropyLoss()
        self.scaler = policy.create_scaler()

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Move and cast an input batch the way the model expects it (dtype for bf16, memory format)."""
        x = x.to(self.device, non_blocking=True)
        if self.policy.param_dtype != torch.float32:
            x = x.to(self.policy.param_dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _train_mode(self, training: bool) -> None:
        if self.model.training != training:
            self.model.train(training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: eval mode, no autograd. Returns the logits."""
        self._train_mode(False)
        with torch.inference_mode(), self.policy.autocast():
            return self.model(x)

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # autocast already runs the loss in fp32: an explicit cast here would only add a kernel the bare loop lacks
        with self.policy.autocast():
            return self.loss_fn(self.model(x), y)

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward and backward in train mode; gradients are left in place (zeroed first). Returns the loss."""
        self._train_mode(True)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(x, y)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        return loss.detach()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The full training step: forward, backward and optimizer update. Returns the loss."""
        loss = self.forward_backward(x, y)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return loss
