"""eval of an embedding (feature-extraction) model compares it with a reference over a corpus; the options of a
classifier's labelled data were accepted and ignored there: ``--test-file nonexistent.csv`` scored the review data
without a word. They are refused in one line, as a classifier refuses ``--corpus``/``--reference``."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.testing.bench_models import encoder_like


@pytest.mark.parametrize("extra, named", [
    (["--test-file", "nonexistent.csv"], "--test-file"),
    (["--split", "dev"], "--split"),
    (["--max-eval", "5"], "--max-eval"),
    (["--data", "rotten-tomatoes", "--label-col", "y"], "--label-col"),
])
def test_classifier_options_are_refused_for_an_embedding_model(tmp_path, extra, named):
    model = encoder_like(tmp_path / "emb.onnx")  # [batch, seq, hidden] output: an embedding model
    out = tmp_path / "e.json"
    res = CliRunner().invoke(main, ["eval", str(model), *extra, "-o", str(out)])
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {named}: classifiers only; "), lines
    assert "is an embedding model" in lines[0] and "Traceback" not in res.output
    assert not out.exists()
