"""Training functions called from a program leave torch's thread count as they found it."""

from __future__ import annotations

import pytest


def test_finetune_restores_torch_threads_also_when_it_raises(tmp_path):
    """make_accelerator set torch's thread count to cfg.threads for good: a program that fine-tuned (or failed
    to, here: a model folder without a tokenizer) ran on that many threads from then on."""
    import torch

    from deploytool.errors import DeployError
    from deploytool.testing.toy_text import tiny_classifier_folder, toy_csv
    from deploytool.train.config import DataConfig, TrainConfig
    from deploytool.train.finetune import finetune

    folder = tiny_classifier_folder(tmp_path / "m")
    for f in folder.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special_tokens")):
            f.unlink()
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    cfg = TrainConfig(model=str(folder), output=tmp_path / "out", data=DataConfig(data=str(toy_csv(tmp_path / "d.csv"))),
                      threads=other)
    with pytest.raises(DeployError, match="tokenizer"):
        finetune(cfg)
    assert torch.get_num_threads() == before
