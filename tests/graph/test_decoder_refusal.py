"""A decoder exported with its causal mask written out (transformers' GPT-2 and Llama through torch's dynamo exporter:
the way such models export today; TorchScript's exporter fails on them) was refused for how its attention differs
from an encoder's ("cannot trace the K operand back to a projection with constant weights", "cannot read the head
count from the packed QKV view"), which does not tell a user that deploytool's passes are for encoders. The refusal
names the comparison of key with query positions that builds the mask."""

from __future__ import annotations

import re
import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


class _LastHidden(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state


def _decoder(kind: str):
    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64)
        return transformers.GPT2Model(cfg).eval()
    cfg = transformers.LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64)
    return transformers.LlamaModel(cfg).eval()


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_a_decoder_with_its_causal_mask_is_named_as_one(tmp_path, kind):
    from click.testing import CliRunner

    from deploytool.cli import main

    ids = torch.randint(0, 100, (1, 8))
    b, s = torch.export.Dim("b", min=1, max=64), torch.export.Dim("s", min=2, max=60)
    path = tmp_path / f"{kind}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(_LastHidden(_decoder(kind)), (ids, torch.ones_like(ids)), dynamo=True,
                                    input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                                    dynamic_shapes={"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}},
                                    opset_version=18, report=False, verbose=False)
    program.save(str(path))
    before = path.read_bytes()
    for args in (["slice", str(path), "--width", "0.5"], ["prune-heads", str(path), "--heads", "0:0"]):
        out = tmp_path / "out.onnx"
        r = CliRunner().invoke(main, [*args, "-o", str(out)])
        lines = r.stderr.strip().splitlines()
        assert r.exit_code == 2 and len(lines) == 1, r.output
        assert re.match(r"error: node '[^']+' \((LessOrEqual|Less|GreaterOrEqual|Greater)\) compares key positions "
                        r"with query positions, as a causal mask does: this looks like a decoder", lines[0]), lines[0]
        assert not out.exists()
    r = CliRunner().invoke(main, ["inspect", str(path)])
    assert "causal mask" in r.output and "decoder" in r.output, r.output
    assert path.read_bytes() == before
