"""DynaBERT's rounding rule (its public code, Python's round = ties to even) in the slice pass, the
training-time sub-network and the reference, on cases where it differs from round-half-up.

Expected numbers are written out by hand below; the reference (``deploytool.testing.reference``)
holds a literal copy of DynaBERT's ``round_to_nearest`` and layer loop, not the pass's functions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from deploytool.errors import ConfigError, PassRefusedError
from deploytool.passes.slice_subnetwork import SliceConfig, depth_keep, ffn_keep, slice_file, width_keep
from deploytool.testing import reference as ref
from deploytool.testing.prune_cases import max_diff, run_bytes
from deploytool.testing.tiny import fixed_inputs

TOL = 1e-4
LENGTHS = [(8, 5, 3), (16, 1)]


# ----------------------------------------------------------------------------- the rule, by hand


def test_depth_ties_to_even():
    assert depth_keep(0.75, 6) == [0, 1, 2, 4]  # round(4.5) = 4 layers, floor(i / 0.75)
    assert depth_keep(0.75, 6, "half-up") == [0, 1, 2, 4, 5]
    assert depth_keep(0.5, 12) == [0, 2, 4, 6, 8, 10]
    assert depth_keep(0.5, 3) == [0, 2]  # round(1.5) = 2
    assert depth_keep(0.25, 2) == []  # round(0.5) = 0 (half-up keeps [0])
    assert depth_keep(0.25, 2, "half-up") == [0]
    assert depth_keep(1.0, 5) == list(range(5))


def test_heads_ties_to_even():
    assert width_keep(0.75, 6) == 4 and width_keep(0.75, 6, "half-up") == 5  # round(4.5)
    assert width_keep(0.625, 4) == 2 and width_keep(0.625, 4, "half-up") == 3  # round(2.5)
    assert width_keep(0.375, 12) == 4 and width_keep(0.375, 12, "half-up") == 5  # round(4.5)
    assert width_keep(0.375, 4) == 2  # round(1.5) = 2 (even)
    assert width_keep(0.25, 2) == 0 and width_keep(0.25, 2, "half-up") == 1  # round(0.5) = 0


def test_ffn_follows_rounded_heads():
    # int(round(H*w)/H * F): the FFN takes the heads' applied width, not w itself
    assert ffn_keep(0.75, 6, 36) == 24 and ffn_keep(0.75, 6, 36, "half-up") == 27
    assert ffn_keep(0.625, 4, 40) == 20  # 2/4 of 40
    assert ffn_keep(0.375, 12, 36) == 12  # 4/12 of 36
    assert ffn_keep(0.3, 4, 48) == 12 and ffn_keep(0.3, 4, 48, "half-up") == 14  # 1/4 of 48 vs 14.4
    # the exact float operations: 7/10 = 0.7 (below 0.7 exactly) * 90 = 62.999... -> int -> 62
    assert round(10 * 0.7) == 7 and int(7 * 1.0 / 10 * 90) == 62
    assert ffn_keep(0.7, 10, 90) == 62
    assert ffn_keep(1.0, 12, 3072) == 3072 and ffn_keep(0.04, 12, 100) == 1  # round(0.48) = 0 -> min_value=1


def test_pass_rule_equals_dynabert_copy_on_a_grid():
    """The pass's functions against the reference's literal copy of DynaBERT's code, ties included."""
    widths = sorted({k / 16 for k in range(1, 17)} | {k / 12 for k in range(1, 13)} | {0.3, 0.7, 0.05, 0.95}
                    | {(k + 0.5) / h for h in (2, 4, 6, 8, 10, 12, 16) for k in range(h)})
    for h in (1, 2, 3, 4, 6, 8, 10, 12, 16):
        for w in widths:
            assert width_keep(w, h) == ref.dynabert_num_heads(h, w), (h, w)
            for f in (24, 36, 40, 90, 170, 3072):
                assert ffn_keep(w, h, f) == ref.round_to_nearest(f, w, h), (h, w, f)
    for L in range(1, 25):
        for d in sorted({k / 16 for k in range(1, 17)} | {(k + 0.5) / L for k in range(L)} | {0.75, 0.5, 0.25}):
            keep = depth_keep(d, L)
            assert keep == ref.dynabert_kept_layers(d, L), (L, d)
            assert all(0 <= i < L for i in keep) and keep == sorted(set(keep))


@pytest.mark.parametrize("value", ["nearest", "", None, 1, "half_up"])
def test_rounding_option_refuses(value):
    with pytest.raises(ConfigError) as e:
        SliceConfig(0.5, 0.5, rounding=value)
    msg = str(e.value)
    assert msg.startswith("rounding:") and "dynabert" in msg and "half-up" in msg and "\n" not in msg


def test_rounding_option_default():
    assert SliceConfig().rounding == "dynabert"
    assert SliceConfig(0.5, 0.75, "half-up").rounding == "half-up"
    assert SliceConfig(0.5, 0.75, "Half-Up").rounding == "half-up"  # a name of a closed set, in any case (as --runtime)


def test_training_subnet_counts_follow_dynabert():
    from deploytool.train.subnet import kept_heads, kept_layers, kept_neurons

    assert kept_heads(6, 0.75) == 4 and kept_neurons(36, 6, 0.75) == 24
    assert kept_heads(12, 0.375) == 4 and kept_neurons(36, 12, 0.375) == 12
    assert kept_neurons(90, 10, 0.7) == 62
    assert kept_layers(6, 0.75) == [0, 1, 2, 4] and kept_layers(12, 0.5) == [0, 2, 4, 6, 8, 10]


# ----------------------------------------------------------------------------- on real exports

# (shape, width, depth, heads kept, neurons kept, layers kept), written out by hand
CASES = [
    # 6 layers at d=0.75: round(4.5) = 4 layers [0, 1, 2, 4]; 6 heads at w=0.75: round(4.5) = 4 heads,
    # int(4/6 * 36) = 24 neurons (half-up: 5 layers, 5 heads, 27 neurons)
    (dict(layers=6, hidden=24, heads=6, ffn=36, seed=11), 0.75, 0.75, 4, 24, [0, 1, 2, 4]),
    # 4 heads at w=0.625: round(2.5) = 2 heads, 2/4 of 40 = 20 neurons; 3 layers at d=0.5: round(1.5) = 2
    (dict(layers=3, hidden=32, heads=4, ffn=40, seed=12), 0.625, 0.5, 2, 20, [0, 2]),
    # 12 heads at w=0.375: round(4.5) = 4 heads, 4/12 of 36 = 12 neurons; 12 layers at d=0.5
    (dict(layers=12, hidden=24, heads=12, ffn=36, seed=13), 0.375, 0.5, 4, 12, [0, 2, 4, 6, 8, 10]),
    # 10 heads at w=0.7: 7 heads, int(0.7 * 90) = int(62.999...) = 62 neurons (not 63)
    (dict(layers=2, hidden=40, heads=10, ffn=90, seed=14), 0.7, 1.0, 7, 62, [0, 1]),
]


@pytest.mark.parametrize("shape,w,d,kh,kf,layers", CASES,
                         ids=[f"H{c[0]['heads']}-L{c[0]['layers']}-w{c[1]}-d{c[2]}" for c in CASES])
def test_slice_follows_dynabert_on_export(tiny_onnx, tiny_torch_model, tmp_path, shape, w, d, kh, kf, layers):
    src = tiny_onnx("bert", exporter="torch", **shape)
    dst = tmp_path / "s.onnx"
    res = slice_file(src, dst, SliceConfig(w, d))
    s = res.to_dict()  # the flat JSON form: typed counts, sizes and gate with the details
    assert s["rounding"] == "dynabert" and "ties to even" in s["rule"]
    assert s["layers_kept"] == layers and s["layers_after"] == len(layers)
    assert s["heads_per_layer"] == [kh] * len(layers) and s["heads_kept"] == [kh] * len(layers)
    assert s["neurons_per_layer"] == [kf] * len(layers) and s["neurons_kept"] == [kf] * len(layers)
    model = tiny_torch_model("bert", **shape)
    sliced = ref.slice_reference(model, w, d)
    # the reference reaches the same counts on its own (transformers' prune_heads, nn.Linear slicing)
    assert [ref._num_heads(la) for la in ref.layers_of(sliced)] == [kh] * len(layers)
    assert [ref._ffn_linears(la)[0].out_features for la in ref.layers_of(sliced)] == [kf] * len(layers)
    for lengths in LENGTHS:
        feeds = fixed_inputs(lengths=lengths, seed=len(lengths))
        assert max_diff(run_bytes(dst.read_bytes(), feeds), ref.torch_outputs(sliced, feeds)) <= TOL
    assert s["params_before"] - s["params_after"] == ref.num_params(model) - ref.num_params(sliced)


SIX = CASES[0][0]


def _cli(*args):
    from deploytool.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_half_up_keeps_five_of_six_layers(tiny_onnx, tiny_torch_model, tmp_path):
    src = tiny_onnx("bert", exporter="torch", **SIX)
    model = tiny_torch_model("bert", **SIX)
    feeds = fixed_inputs(lengths=(8, 5, 3))
    out = {}
    for rounding in ("dynabert", "half-up"):
        out[rounding] = tmp_path / f"{rounding}.onnx"
        res = _cli("slice", src, "--width", "0.75", "--depth", "0.75", "--rounding", rounding, "-o", out[rounding])
        assert res.exit_code == 0, res.output + res.stderr
        assert f"rounding {rounding}:" in res.output
        want = ref.torch_outputs(ref.slice_reference(model, 0.75, 0.75, rounding=rounding), feeds)
        assert max_diff(run_bytes(out[rounding].read_bytes(), feeds), want) <= TOL, rounding
    from deploytool.inspection import inspect_model

    half = inspect_model(out["half-up"]).to_dict()
    assert half["num_layers"] == 5 and half["heads_per_layer"] == [5] * 5 and half["ffn_per_layer"] == [27] * 5
    dyn = inspect_model(out["dynabert"]).to_dict()
    assert dyn["num_layers"] == 4 and dyn["heads_per_layer"] == [4] * 4 and dyn["ffn_per_layer"] == [24] * 4
    # the default is DynaBERT's rule
    res = _cli("slice", src, "--width", "0.75", "--depth", "0.75", "-o", tmp_path / "default.onnx")
    assert res.exit_code == 0 and "layers  6 -> 4" in res.output, res.output


def test_cli_rounding_bad_value(tiny_onnx, tmp_path):
    src = tiny_onnx("bert", exporter="torch", **SIX)
    res = _cli("slice", src, "--depth", "0.75", "--rounding", "nearest", "-o", tmp_path / "o.onnx")
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --rounding:") and "half-up" in lines[0], res.stderr
    assert not (tmp_path / "o.onnx").exists()


def test_cli_help_states_rule():
    res = _cli("slice", "--help")
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    for needle in ("round(w*H)", "int(round(w*H)/H*F)", "floor(i/d) for i < round(d*L)", "ties to even",
                   "--rounding", "half-up"):
        assert needle in text, needle


def test_tie_to_zero_heads_is_refused(tiny_onnx, tmp_path):
    """2 heads at w=0.25: round(0.5) = 0 heads -> refused in one line; half-up keeps 1 head."""
    shape = dict(layers=2, hidden=16, heads=2, ffn=24, seed=15)
    src = tiny_onnx("bert", exporter="torch", **shape)
    with pytest.raises(PassRefusedError) as e:
        slice_file(src, tmp_path / "o.onnx", SliceConfig(0.25, 1.0))
    msg = str(e.value)
    assert "\n" not in msg and "0 heads" in msg and "width 0.25" in msg and "dynabert" in msg
    assert not (tmp_path / "o.onnx").exists()
    res = slice_file(src, tmp_path / "h.onnx", SliceConfig(0.25, 1.0, rounding="half-up"))
    assert res.counts.heads_per_layer == [1, 1] and res.stats["rounding"] == "half-up"
    # 2 layers at d=0.25: round(0.5) = 0 layers -> refused
    with pytest.raises(PassRefusedError, match="0 of 2 layers"):
        slice_file(src, tmp_path / "o.onnx", SliceConfig(1.0, 0.25))


def test_training_subnet_equals_slice_at_ties(tiny_onnx, tiny_torch_model, tmp_path):
    """The PyTorch training-time sub-network computes what the sliced export computes, at the ties."""
    import torch

    from deploytool.train.subnet import subnet_forward

    task = "sequence-classification"
    src = tiny_onnx("bert", exporter="torch", task=task, **SIX)
    model = tiny_torch_model("bert", task=task, **SIX)
    x = fixed_inputs(lengths=(8, 5, 3))
    dst = tmp_path / "s.onnx"
    slice_file(src, dst, SliceConfig(0.75, 0.75))
    with torch.no_grad():
        out = subnet_forward(model, *(torch.from_numpy(x[k]) for k in ("input_ids", "attention_mask",
                                                                       "token_type_ids")), width=0.75, depth=0.75)
    assert out.layers == [0, 1, 2, 4]
    got = run_bytes(dst.read_bytes(), x)
    assert max_diff(got, out.logits.numpy()) <= TOL
    assert max_diff(got, ref.torch_outputs(ref.slice_reference(model, 0.75, 0.75), x)) <= TOL
    assert not math.isnan(float(np.abs(got).sum()))
