"""A ``pytorch_model.bin`` that torch's weights-only loading refuses is one line naming the file and why.

transformers wraps the refusal in "Unable to load weights ... If you tried to load a PyTorch model from a TF 2.0
checkpoint, please set from_tf=True", which sent the user after a TensorFlow checkpoint; export, train and the
library loaders now say which file, that weights-only loading refused it, and to convert it to safetensors.
"""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.errors import InputFileError


class Smuggled:
    """A class of the checkpoint's own: torch.load(weights_only=True) refuses to build it."""


@pytest.fixture
def refused_folder(tiny_hf_folder, tmp_path):
    """An otherwise valid tiny BERT classifier folder whose pytorch_model.bin also pickles a ``Smuggled``."""
    import torch

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_hf_folder("bert", "sequence-classification", safetensors=False), folder)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    state["extra"] = Smuggled()
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def _assert_refusal(message: str, folder) -> None:
    assert "\n" not in message.strip(), message
    assert f"{folder / 'pytorch_model.bin'}: refused by torch's weights-only loading" in message
    assert "Smuggled" in message and "safetensors" in message
    assert "from_tf" not in message and "TF 2.0" not in message


def test_export_cli_names_the_file_and_the_reason(refused_folder, tmp_path):
    r = CliRunner().invoke(main, ["export", "--model", str(refused_folder), "-o", str(tmp_path / "m.onnx")])
    assert r.exit_code == 2, r.output
    _assert_refusal(r.output.removeprefix("error: "), refused_folder)
    assert not (tmp_path / "m.onnx").exists()


def test_the_library_loaders_name_the_file_and_the_reason(refused_folder):
    from deploytool.export.hf import load_hf_model
    from deploytool.train.checkpoint import load_classifier

    with pytest.raises(InputFileError) as e:
        load_hf_model(refused_folder, "sequence-classification")
    _assert_refusal(str(e.value), refused_folder)
    with pytest.raises(InputFileError) as e:  # what train, qat, dynabert and distill load their models with
        load_classifier(refused_folder)
    _assert_refusal(str(e.value), refused_folder)


def test_another_load_failure_is_not_called_a_refusal(tiny_hf_folder, tmp_path):
    """Another failure is still reported as it was (the refusal is only said where torch refused)."""
    from deploytool.export.hf import weights_only_refusal

    assert weights_only_refusal(tmp_path, OSError("Unable to load weights ... please set from_tf=True")) is None


def test_a_sharded_checkpoint_names_the_refused_shard(tmp_path):
    """pytorch_model-0000k-of-0000n.bin shards: the message named pytorch_model.bin, which the folder does not have."""
    import torch

    from deploytool.testing.tiny import tiny_model

    folder = tmp_path / "sharded"
    tiny_model("bert", task="sequence-classification").save_pretrained(folder, safe_serialization=False,
                                                                      max_shard_size="20KB")
    shards = sorted(folder.glob("pytorch_model-*.bin"))
    assert len(shards) > 2 and not (folder / "pytorch_model.bin").exists()
    state = torch.load(shards[1], weights_only=True)
    state["extra"] = Smuggled()
    torch.save(state, shards[1])
    r = CliRunner().invoke(main, ["export", "--model", str(folder), "-o", str(tmp_path / "m.onnx")])
    assert r.exit_code == 2, r.output
    line = r.output.strip().splitlines()[-1].removeprefix("error: ")
    assert line.startswith(f"{shards[1]}: refused by torch's weights-only loading"), line
    assert "Smuggled" in line and not (tmp_path / "m.onnx").exists()
