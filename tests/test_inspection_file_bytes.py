"""deploytool inspect: the size it reports is the .onnx file and every external-data file it names."""

from __future__ import annotations

import json
import shutil

import onnx
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.inspection import inspect_model


def _save_external(src, dst, location, threshold):
    m = onnx.load(str(src))
    onnx.save(m, str(dst), save_as_external_data=True, all_tensors_to_one_file=True, location=location,
              size_threshold=threshold)


def test_file_bytes_count_external_data_whatever_its_share(tiny_onnx, tmp_path):
    """A packed model with its tensors external: the graph left in the .onnx (the unpacking nodes) outweighs
    half of the 2-bit weights, which made inspect report the .onnx alone (38.2 kB of a 68.4 kB model)."""
    from deploytool.passes.pack_weights import PackConfig, pack_file

    src = tmp_path / "packed.onnx"
    pack_file(tiny_onnx("bert"), src, PackConfig(weights="ternary", runtime="speed"), verify=False)
    for threshold in (0, 1024):
        model = tmp_path / f"m{threshold}.onnx"
        data = tmp_path / f"weights{threshold}.bin"
        _save_external(src, model, data.name, threshold)
        assert data.stat().st_size > 0
        on_disk = model.stat().st_size + data.stat().st_size
        assert inspect_model(model).file_bytes == on_disk, threshold
        res = CliRunner().invoke(main, ["inspect", "--json", str(model)])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["file_bytes"] == on_disk


def test_file_bytes_of_a_self_contained_file(tiny_onnx, tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copyfile(tiny_onnx("bert"), model)
    (tmp_path / "m.onnx.data").write_bytes(b"x" * 1000)  # a stray file beside it is not the model's
    assert inspect_model(model).file_bytes == model.stat().st_size
