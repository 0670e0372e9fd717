"""Fixtures shared by the report tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    """A bench JSON of one tiny encoder-like model at sequence 8 (2 runs): the input of report tests that check
    what the report refuses or writes, not its numbers."""
    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.testing.bench_models import encoder_like

    d = tmp_path_factory.mktemp("tiny_bench")
    model = encoder_like(d / "m.onnx", vocab=50, hidden=16, layers=1)
    write_json(run_benchmark(BenchConfig(models=(model,), seq_lens=(8,), runs=2, warmup=1)), d / "b.json")
    return d / "b.json"
