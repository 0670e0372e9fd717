"""The same `deploytool train` command under `accelerate launch` with two CPU processes (gloo).

accelerate 1.x starts one process for `accelerate launch --cpu --num_processes 2` unless mpirun is
configured (its simple launcher); `--multi_gpu --num_processes 2` starts two through torchrun, and
`deploytool train --cpu` makes each Accelerator pick MULTI_CPU with the gloo backend.

What multi-GPU and multi-node runs rely on: each process trains on its own shard of every batch, the
gradients are averaged across processes after backward, so both processes step identically and end
with bit-identical weights; the loss still falls; only the main process writes the folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("accelerate")

from deploytool.testing.toy_text import tiny_classifier_folder, toy_csv  # noqa: E402


def _accelerate() -> list[str]:
    exe = Path(sys.executable).parent / "accelerate"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "accelerate.commands.launch"]


@pytest.mark.slow
def test_train_two_processes_end_identical_and_loss_falls(tmp_path):
    data = toy_csv(tmp_path / "toy.csv", n=400)
    tiny_classifier_folder(tmp_path / "tiny", layers=2, hidden=32, heads=4, ffn=64)
    out = tmp_path / "teacher"
    launch = _accelerate()
    if launch[0].endswith("accelerate"):
        launch = launch + ["launch"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = launch + ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                    "--dynamo_backend", "no", "--main_process_port", str(port),
                    "-m", "deploytool", "train", "--model", str(tmp_path / "tiny"), "-o", str(out), "--cpu",
                    "--data", str(data), "--epochs", "4", "--lr", "3e-3", "--batch-size", "8", "--threads", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    env.pop("ACCELERATE_CONFIG_FILE", None)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    digests = dict(re.findall(r"process (\d)/2: weights sha256 ([0-9a-f]{64})", p.stdout))
    assert sorted(digests) == ["1", "2"], p.stdout[-2000:]
    assert digests["1"] == digests["2"], "the two processes ended with different weights"
    meta = json.loads((out / "deploytool.json").read_text())
    assert meta["processes"] == 2
    assert meta["weights_sha256"] == digests["1"]  # the folder holds what both processes hold
    tr = meta["training"]
    assert tr["last_loss"] < 0.7 * tr["first_loss"], tr
    # each process saw half of each epoch: steps count the global batches (400 * 0.8 / (8 * 2) per epoch)
    assert tr["steps"] == 4 * -(-int(400 * 0.8) // 16)
    assert meta["dev"]["accuracy"] > 60
    shutil.rmtree(out)
