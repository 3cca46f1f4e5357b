"""Tests for the model zoo: every registered model builds, runs, trains one step and loads its own checkpoint."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import torch
from torch import nn

from fer_bench import FerBenchError
from fer_bench.models import (
    ModelInfo,
    count_flops,
    create_model,
    describe_models,
    get_model_info,
    list_models,
    register_model,
)

torch.set_num_threads(2)

PAPER_CNNS = ["fer_cnn_2block", "fer_cnn_3block", "fer_cnn_4block", "fer_cnn_5block"]
# The registry names are a published contract (benchmark ids and stored baselines use them).
EXPECTED_NAMES = {
    *PAPER_CNNS,
    "vgg_fer",
    "efficientnet_b0",
    "efficientnet_b0_rgb224",
    "resnet18",
    "hrnet_w18_small",
}


def _example(info: ModelInfo, batch: int = 2, in_chans: int | None = None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    chans = info.in_chans if in_chans is None else in_chans
    return torch.randn(batch, chans, info.input_size, info.input_size, generator=gen)


def test_registry_holds_the_documented_models_in_alphabetical_order():
    names = list_models()
    assert set(names) == EXPECTED_NAMES
    assert names == sorted(names)
    assert list_models("fer_cnn_*") == PAPER_CNNS
    assert list_models("*EFFICIENTNET*") == ["efficientnet_b0", "efficientnet_b0_rgb224"]
    assert list_models("no_such_*") == []


def test_declared_inputs():
    rgb = get_model_info("efficientnet_b0_rgb224")
    assert (rgb.name, rgb.input_size, rgb.in_chans, rgb.family) == ("efficientnet_b0_rgb224", 224, 3, "efficientnet")
    assert (get_model_info("hrnet_w18_small").input_size, get_model_info("hrnet_w18_small").in_chans) == (64, 1)
    for name in [*PAPER_CNNS, "vgg_fer", "efficientnet_b0", "resnet18"]:
        info = get_model_info(name)
        assert (info.input_size, info.in_chans) == (48, 1), name
        assert info.description and info.family


@pytest.mark.parametrize("name", list_models())
def test_forward_shape_channels_last_and_bf16_autocast(name):
    info = get_model_info(name)
    model = create_model(name).eval()
    assert model.fer_info == info
    x = _example(info)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 7) and out.dtype == torch.float32
        assert torch.isfinite(out).all()

        model_cl = model.to(memory_format=torch.channels_last)
        out_cl = model_cl(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(out_cl, out, rtol=1e-3, atol=1e-3)

        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf16 = model_cl(x.contiguous(memory_format=torch.channels_last))
        assert out_bf16.shape == (2, 7)
        assert torch.isfinite(out_bf16.float()).all()


@pytest.mark.parametrize("name", list_models())
def test_one_training_step_updates_every_parameter(name):
    info = get_model_info(name)
    torch.manual_seed(0)
    model = create_model(name).train()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = _example(info)
    y = torch.tensor([0, 3])

    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()

    assert torch.isfinite(loss)
    unused = [k for k, p in model.named_parameters() if p.grad is None]
    assert not unused, f"parameters outside the graph: {unused[:5]}"
    changed = [k for k, p in model.named_parameters() if not torch.equal(p.detach(), before[k])]
    # Every tensor with a nonzero gradient must move; a dead layer or a detached head would show here.
    moved_expected = [k for k, p in model.named_parameters() if p.grad.abs().sum() > 0]
    assert moved_expected and set(moved_expected) <= set(changed)


@pytest.mark.parametrize("name", list_models())
def test_num_classes_and_in_chans_override(name):
    info = get_model_info(name)
    chans = 3 if info.in_chans == 1 else 1
    model = create_model(name, num_classes=3, in_chans=chans).eval()
    assert model.fer_info.in_chans == chans and model.fer_info.input_size == info.input_size
    with torch.no_grad():
        out = model(_example(info, in_chans=chans))
    assert out.shape == (2, 3)
    with pytest.raises(RuntimeError):
        with torch.no_grad():
            model(_example(info, in_chans=info.in_chans))


def test_none_kwargs_are_dropped_and_others_reach_the_model():
    default = create_model("fer_cnn_3block", drop_rate=None)
    no_drop = create_model("fer_cnn_3block", drop_rate=0.0)
    n_dropouts = lambda m: sum(isinstance(mod, nn.Dropout) for mod in m.modules())  # noqa: E731
    assert n_dropouts(default) == n_dropouts(no_drop) + 1
    with pytest.raises(TypeError):
        create_model("fer_cnn_3block", no_such_option=1)


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_bad_num_classes_is_a_user_error(value):
    with pytest.raises(FerBenchError, match="num_classes"):
        create_model("fer_cnn_2block", num_classes=value)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(FerBenchError) as exc:
        create_model("fer_cnn_3blok")
    msg = str(exc.value)
    assert "'fer_cnn_3blok'" in msg and "fer_cnn_3block" in msg and "fer-bench models" in msg
    assert "\n" not in msg
    with pytest.raises(FerBenchError, match="efficientnet_b0"):
        get_model_info("efficientnet-b0")
    with pytest.raises(FerBenchError, match="fer-bench models"):
        get_model_info("zzzzzz")


def test_register_model_rejects_a_duplicate_name():
    def fer_cnn_2block(num_classes: int = 7, in_chans: int = 1) -> nn.Module:
        return nn.Linear(1, num_classes)

    with pytest.raises(ValueError, match="already registered"):
        register_model(family="x", description="x")(fer_cnn_2block)
    assert get_model_info("fer_cnn_2block").family == "fer_cnn"


# --- checkpoints -------------------------------------------------------------------------------------------------


def _trained_state(name: str = "fer_cnn_3block") -> tuple[nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    model = create_model(name)
    # Give BN buffers non-default values so a buffer that fails to load would change the eval output.
    model.train()
    with torch.no_grad():
        model(_example(get_model_info(name), batch=4))
    return model.eval(), model.state_dict()


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3},
        lambda sd: {"model": sd, "optimizer": {}},
        lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},
    ],
    ids=["raw", "ddp_state_dict_key", "model_key", "compiled"],
)
def test_checkpoint_round_trip(tmp_path, wrap):
    model, state = _trained_state()
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(state), path)
    torch.manual_seed(99)  # a fresh model would differ without the checkpoint
    fresh = create_model("fer_cnn_3block", checkpoint=str(path)).eval()
    unloaded = create_model("fer_cnn_3block").eval()
    x = _example(get_model_info("fer_cnn_3block"))
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
        assert not torch.equal(unloaded(x), model(x))


def test_checkpoint_missing_file(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(FerBenchError, match="nope.pt.*no such file"):
        create_model("fer_cnn_2block", checkpoint=path)


def test_checkpoint_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(b"this is not a checkpoint\x00\x01")
    with pytest.raises(FerBenchError) as exc:
        create_model("fer_cnn_2block", checkpoint=path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_checkpoint_truncated_file(tmp_path):
    _, state = _trained_state("fer_cnn_2block")
    path = tmp_path / "truncated.pt"
    torch.save(state, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(FerBenchError, match="truncated.pt"):
        create_model("fer_cnn_2block", checkpoint=path)


def test_checkpoint_without_a_state_dict(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(FerBenchError, match="tensor.pt.*no state dict"):
        create_model("fer_cnn_2block", checkpoint=path)


def test_checkpoint_of_another_model(tmp_path):
    _, state = _trained_state("fer_cnn_3block")
    path = tmp_path / "other.pt"
    torch.save(state, path)
    with pytest.raises(FerBenchError, match="other.pt.*missing key"):
        create_model("fer_cnn_2block", checkpoint=path)


def test_checkpoint_with_other_num_classes(tmp_path):
    _, state = _trained_state("fer_cnn_2block")
    path = tmp_path / "seven.pt"
    torch.save(state, path)
    with pytest.raises(FerBenchError, match="seven.pt.*shape mismatch"):
        create_model("fer_cnn_2block", num_classes=3, checkpoint=path)


def test_pickled_code_is_refused(tmp_path):
    # weights_only=True: an arbitrary pickled object must not be unpickled (it could run code).
    path = tmp_path / "pickle.pt"
    torch.save({"state_dict": ModelInfo("a", 1, 1, "b", "c")}, path)
    with pytest.raises(FerBenchError, match="pickle.pt"):
        create_model("fer_cnn_2block", checkpoint=path)


# --- sizes and FLOPs ---------------------------------------------------------------------------------------------


def test_paper_cnn_parameter_counts_strictly_increase():
    counts = [sum(p.numel() for p in create_model(n).parameters()) for n in PAPER_CNNS]
    assert counts == sorted(set(counts)), counts
    assert counts[-1] > 10 * counts[0]


def _reference_flops(model: nn.Module, x: torch.Tensor) -> int:
    """2 x MACs of every Conv2d and Linear, from their output shapes (independent of FlopCounterMode)."""
    total = 0

    def hook(mod: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            macs_per_out = mod.in_channels // mod.groups * kh * kw
        else:
            macs_per_out = mod.in_features
        total += 2 * out.numel() * macs_per_out

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def test_describe_models_rows():
    rows = describe_models()
    assert [r["name"] for r in rows] == list_models()
    types = {"name": str, "family": str, "num_params": int, "input_size": int, "in_chans": int, "gflops": float,
             "description": str}
    for row in rows:
        assert set(row) == set(types)
        for key, typ in types.items():
            assert type(row[key]) is typ, (row["name"], key)
        info = get_model_info(row["name"])
        assert (row["input_size"], row["in_chans"], row["family"]) == (info.input_size, info.in_chans, info.family)
        assert row["num_params"] > 0 and row["gflops"] > 0
    by_name = {r["name"]: r for r in rows}
    # The same network at 224x224 RGB costs far more than at 48x48 gray.
    assert by_name["efficientnet_b0_rgb224"]["gflops"] > 10 * by_name["efficientnet_b0"]["gflops"]
    assert [r["name"] for r in describe_models("fer_cnn_*")] == PAPER_CNNS
    rows[0]["name"] = "mutated"
    assert describe_models()[0]["name"] != "mutated"


@pytest.mark.parametrize("name", ["fer_cnn_2block", "vgg_fer", "fer_cnn_5block"])
def test_gflops_match_count_flops_and_an_independent_count(name):
    info = get_model_info(name)
    row = describe_models(name)[0]
    model = create_model(name).eval()
    x = torch.zeros(1, info.in_chans, info.input_size, info.input_size)
    flops = count_flops(model, x)
    assert row["gflops"] * 1e9 == pytest.approx(flops, rel=1e-9)
    # These nets are plain convs and linears, so a hook-based count must agree exactly.
    assert flops == _reference_flops(model, x)
    assert count_flops(model, torch.zeros(4, *x.shape[1:])) == 4 * flops


@pytest.mark.parametrize("name", ["fer_cnn_3block", "resnet18", "efficientnet_b0"])
def test_backward_flops_are_about_twice_forward(name):
    info = get_model_info(name)
    model = create_model(name).train()
    x = _example(info, batch=4)
    fwd = count_flops(model, x)
    step = count_flops(model, x, backward=True)
    assert 2 * fwd < step < 4 * fwd


def test_grouped_conv_backward_counts_one_forward_per_gradient():
    # torch's built-in rule multiplies a grouped conv's weight gradient by `groups` (33x forward for depthwise).
    stem = nn.Conv2d(1, 32, 3, padding=1, bias=False)
    depthwise = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
    x = torch.randn(2, 1, 16, 16)
    f_stem = 2 * 2 * 16 * 16 * 32 * 1 * 9
    f_dw = 2 * 2 * 16 * 16 * 32 * 1 * 9
    assert count_flops(nn.Sequential(stem, depthwise), x) == f_stem + f_dw
    # stem: forward + weight grad (the images need no grad); depthwise: forward + input grad + weight grad.
    assert count_flops(nn.Sequential(stem, depthwise), x, backward=True) == 2 * f_stem + 3 * f_dw


def test_ungrouped_backward_matches_torchs_own_rule():
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model("fer_cnn_3block").train()
    x = _example(get_model_info("fer_cnn_3block"))
    with FlopCounterMode(display=False) as builtin:
        loss = nn.functional.cross_entropy(model(x), torch.zeros(2, dtype=torch.long))
        loss.backward()
    model.zero_grad(set_to_none=True)
    assert count_flops(model, x, backward=True) == builtin.get_total_flops()


def test_count_flops_leaves_the_model_as_found():
    model = create_model("fer_cnn_3block").train()
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    rng = torch.get_rng_state()
    count_flops(model, _example(get_model_info("fer_cnn_3block")), backward=True)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(b, buffers[k]) for k, b in model.named_buffers())
    assert torch.equal(torch.get_rng_state(), rng)


def test_count_flops_accepts_channels_last_and_autocast():
    model = create_model("fer_cnn_2block").eval()
    x = _example(get_model_info("fer_cnn_2block"))
    plain = count_flops(model, x)
    model_cl = model.to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert count_flops(model_cl, [x.contiguous(memory_format=torch.channels_last)]) == plain


# --- imports and the network ---------------------------------------------------------------------------------------


def test_import_and_queries_do_not_import_timm():
    code = (
        "import sys\n"
        "import fer_bench.models as m\n"
        "m.list_models(); m.get_model_info('resnet18'); m.create_model('fer_cnn_2block')\n"
        "assert 'timm' not in sys.modules, 'timm imported'\n"
        "m.create_model('resnet18')\n"
        "assert 'timm' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", ["efficientnet_b0", "hrnet_w18_small"])
def test_timm_models_never_touch_the_network(monkeypatch, name):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    model = create_model(name)
    assert isinstance(model, nn.Module)


def test_pretrained_weights_are_refused():
    with pytest.raises(FerBenchError, match="never downloads"):
        create_model("resnet18", pretrained=True)
    assert isinstance(create_model("resnet18", pretrained=False), nn.Module)
