"""Does DistributedDataParallel train the same model as one process? One step, checked against a reference.

Every rank builds the same seeded global batch (``Training.example_batch`` of ``world_size`` per-device batches:
batch_size x world size under weak scaling, batch_size under strong), takes the rows torch's DistributedSampler
would give it (``shard_rows``: every ``world_size``-th row from its rank on, unshuffled) and runs one DDP step on
them (``rank_check_step``), the case's step with plain SGD in place of its optimizer (see there why). Rank 0,
before that step, copied its model; after it, the copy takes one process's SGD step, and rank 0 compares the
parameters and the gradients SGD applied with its DDP model's. A wrong share, a missing all-reduce or a mis-scaled
loss moves the DDP gradient by 0.3 to 1 of itself (measured with fer_cnn_2block and fer_cnn_3block); rounding in
fp32 by under 1e-6 of it.

The reference is honest about what DDP computes:

- ``global_batch``: one process's step on the whole global batch, for a model whose forward does not depend on
  the batch it sees together (no BatchNorm, no active dropout), such as fer_cnn_2block. The mean loss of the
  global batch and the mean of the ranks' mean losses have the same gradient when the shares are equal.
- ``per_rank_shares``: for a model with BatchNorm or dropout, DDP without SyncBatchNorm normalises each rank's share
  on its own, so one process computes the mean of the shares' gradients (each share forwarded on its own, the RNG
  seeded alike before each, as every rank seeds it) and takes one step with it. Only parameters are compared:
  BatchNorm's running statistics differ per rank until DDP broadcasts rank 0's at the next forward.

A test-only fault,
``FER_BENCH_INJECT_DDP_FAULT`` (``skip_allreduce``: the step under ``no_sync()``; ``scale_loss``: the loss
multiplied by the world size; ``same_share``: every rank takes rank 0's rows), breaks the DDP step so that the
tests can show the check catches it.
"""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import asdict, dataclass

from fer_bench.errors import FerBenchError

FAULT_ENV = "FER_BENCH_INJECT_DDP_FAULT"
FAULTS = ("skip_allreduce", "scale_loss", "same_share")
#: The allowed difference, relative to the largest change the reference step made (its largest gradient element,
#: its largest parameter update), by precision. Measured over two gloo ranks: rounding moved the gradient by 3e-7
#: of that in fp32 and 4e-3 in amp_bf16, the parameters by 1e-5 in fp32; the faults below moved both by 0.3 to 1.
RELATIVE_TOLERANCE = {"fp32": 1e-3, "amp_bf16": 5e-2, "amp_fp16": 2e-2, "bf16": 5e-2}
#: Seeds the RNG before every forward of the check (dropout masks), offset from the case's seed.
FORWARD_SEED_OFFSET = 1


@dataclass(frozen=True)
class CheckResult:
    """The comparison of one DDP step with one process's step (rank 0's view)."""

    ok: bool
    max_abs_diff: float  # the largest parameter difference after the step
    tolerance: float
    parameter: str  # where it is
    grad_max_abs_diff: float
    grad_tolerance: float
    grad_parameter: str
    reference: str  # global_batch | per_rank_shares
    world_size: int
    global_batch_size: int
    precision: str
    fault: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def record(self) -> dict:
        """What a verified result records (``extra_info["ddp_verified"]``)."""
        return {"max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance, "parameter": self.parameter,
                "grad_max_abs_diff": self.grad_max_abs_diff, "grad_tolerance": self.grad_tolerance,
                "reference": self.reference, "world_size": self.world_size,
                "global_batch_size": self.global_batch_size}

    def message(self) -> str:
        """One line: the verdict, the largest parameter difference and the gradient's."""
        verdict = "matches" if self.ok else "does NOT match"
        fault = f" (injected fault: {self.fault})" if self.fault else ""
        return (f"DDP step over {self.world_size} ranks {verdict} one process's step on the global batch of "
                f"{self.global_batch_size}{fault}: largest parameter difference {self.max_abs_diff:.3g} in "
                f"{self.parameter} (tolerance {self.tolerance:.3g}), largest gradient difference "
                f"{self.grad_max_abs_diff:.3g} in {self.grad_parameter} (tolerance {self.grad_tolerance:.3g}); "
                f"reference: {self.reference.replace('_', ' ')}")


def injected_fault(env=None) -> str | None:
    """The test-only fault named by FER_BENCH_INJECT_DDP_FAULT, or None.

    Raises:
        FerBenchError: a value that is not a fault (one line naming the variable).
    """
    value = (os.environ if env is None else env).get(FAULT_ENV, "").strip()
    if not value:
        return None
    if value not in FAULTS:
        raise FerBenchError(f"{FAULT_ENV}={value!r} is not a fault; valid: {', '.join(FAULTS)}")
    return value


def shard_rows(n: int, rank: int, world_size: int) -> list[int]:
    """The rows of a batch of ``n`` that torch's DistributedSampler (unshuffled) gives ``rank``."""
    from torch.utils.data import DistributedSampler

    return list(DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=False))


def batch_dependent(model) -> bool:
    """Whether ``model``'s training forward depends on the batch it is given together (BatchNorm) or on the RNG
    (dropout with p > 0): then one process's step on the global batch is not what DDP computes."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            return True
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return True
    return False


def _forward_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed + FORWARD_SEED_OFFSET)


def rank_check_step(training, rank: int, world_size: int, fault: str | None = None) -> dict | None:
    """One DDP step of this rank's share of the check's global batch; on rank 0 also the reference step and the
    comparison (``CheckResult.as_dict()``); None on the other ranks. Every rank must call it, together.
    ``fault`` None reads FER_BENCH_INJECT_DDP_FAULT.

    ``training`` is a rank's Training whose ``step.model`` is DistributedDataParallel
    (fer_bench.engine.distributed.build_rank_step), its config's batch_size the per-device batch. The step is the
    case's own (model, precision, loss, DDP wrapper) with plain SGD at the case's learning rate in place of its
    optimizer, which stays untouched: SGD applies the gradient unchanged, so the parameters after the step compare
    as well as the gradient does, whereas the first step of Adam or RMSprop divides each gradient element by its
    own size and turns rounding in a near-zero element into a full-size update (seen here: 0.18 x lr between two
    correct steps). The check moves the parameters by one step and starts from rank 0's (as DDP's constructor
    does), so it may run before or between the case's steps.
    """
    import torch
    import torch.distributed as dist

    fault = fault or injected_fault()
    if fault is not None and fault not in FAULTS:
        raise FerBenchError(f"DDP check: {fault!r} is not a fault; valid: {', '.join(FAULTS)}")
    step = training.step
    if not hasattr(step.model, "no_sync"):
        raise FerBenchError("DDP check: the step's model is not DistributedDataParallel")
    config = training.config
    module = step.eager_model
    with torch.no_grad():  # every rank from rank 0's parameters, whatever an earlier (faulty) check left
        for p in module.parameters():
            dist.broadcast(p.data, src=0, group=step.model.process_group)
    n = config.batch_size * world_size
    x, y = training.example_batch(n)
    rows = shard_rows(n, 0 if fault == "same_share" else rank, world_size)
    reference = copy.deepcopy(module) if rank == 0 else None
    before = [p.detach().clone() for p in module.parameters()] if rank == 0 else None
    lr = step.optimizer.param_groups[0]["lr"]

    saved = step.optimizer, step.scaler, step.loss_fn
    step.optimizer, step.scaler = torch.optim.SGD(module.parameters(), lr=lr), step.policy.create_scaler()
    if fault == "scale_loss":
        step.loss_fn = lambda logits, target: saved[2](logits, target) * world_size
    try:
        _forward_seed(config.seed)
        with step.model.no_sync() if fault == "skip_allreduce" else contextlib.nullcontext():
            step.step(x[rows], y[rows])
    finally:
        step.optimizer, step.scaler, step.loss_fn = saved
    if rank != 0:
        return None
    mode = "per_rank_shares" if batch_dependent(module) else "global_batch"
    shares = [shard_rows(n, r, world_size) for r in range(world_size)] if mode == "per_rank_shares" else None
    ref_grads = _reference_step(step, reference, lr, config.seed, x, y, shares)
    names = [name for name, _ in module.named_parameters()]
    after = [p.detach() for p in module.parameters()]
    grads = [p.grad for p in module.parameters()]
    ref_after = [p.detach() for p in reference.parameters()]
    rtol = RELATIVE_TOLERANCE.get(config.precision, RELATIVE_TOLERANCE["bf16"])
    eps = torch.finfo(step.policy.param_dtype).eps

    def largest(pairs) -> tuple[float, int]:
        best, where = 0.0, 0
        for i, (a, b) in enumerate(pairs):
            if a is not None and b is not None and a.numel():
                diff = float((a.double() - b.double()).abs().max())
                if diff > best:
                    best, where = diff, i
        return best, where

    def scale(tensors) -> float:
        return max((float(t.double().abs().max()) for t in tensors if t is not None and t.numel()), default=0.0)

    diff, at = largest(zip(after, ref_after))
    update = scale([a.double() - b.double() for a, b in zip(ref_after, before)])
    # a low-precision parameter moves in steps of its own rounding: allow a few of them beside the relative part
    tolerance = rtol * update + 4 * eps * scale(before)
    grad_diff, grad_at = largest(zip(grads, ref_grads))
    grad_tolerance = rtol * scale(ref_grads)
    missing = [i for i, (g, r) in enumerate(zip(grads, ref_grads)) if (g is None) != (r is None)]
    if missing:  # a gradient on one side only: that parameter is the gradient's culprit
        grad_at, grad_diff = missing[0], float("inf")
    ok = diff <= tolerance and grad_diff <= grad_tolerance
    return CheckResult(ok=ok, max_abs_diff=diff, tolerance=tolerance, parameter=names[at],
                       grad_max_abs_diff=grad_diff, grad_tolerance=grad_tolerance, grad_parameter=names[grad_at],
                       reference=mode, world_size=world_size, global_batch_size=n, precision=config.precision,
                       fault=fault).as_dict()


def _reference_step(step, model, lr: float, seed: int, x, y, shares: list[list[int]] | None) -> list:
    """One process's SGD step of ``model`` (a copy of the rank's module before its DDP step) in ``step``'s
    precision: on the whole batch, or (``shares``) on the mean of the shares' gradients, each share forwarded on its
    own. Returns the gradients SGD applied (unscaled), one per parameter."""
    import torch

    from fer_bench.engine.step import TrainStep

    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    ref = TrainStep(model, optimizer, step.policy, step.device, channels_last=step.channels_last,
                    loss_fn=step.loss_fn)
    if shares is None:
        _forward_seed(seed)
        ref.step(x, y)
    else:
        ref._train_mode(True)
        optimizer.zero_grad(set_to_none=True)
        for rows in shares:
            _forward_seed(seed)  # every rank seeds alike before its forward: the same dropout draws
            with step.policy.autocast():
                loss = ref.loss_fn(model(x[rows]), y[rows]) / len(shares)
            (ref.scaler.scale(loss) if ref.scaler is not None else loss).backward()
        if ref.scaler is not None:
            ref.scaler.step(optimizer)
            ref.scaler.update()
        else:
            optimizer.step()
    return [p.grad for p in model.parameters()]
