"""A model object where the library takes a file (``choices.as_path``, ``choices.show``).

``transform``, ``inspect_model`` and the passes read and write files; a user holding an ``onnx.ModelProto`` or an
``onnx_ir.Model`` gets one line saying that, not the model's repr: onnx_ir's runs over many lines, which broke the
one-line rule of every DeployError ("src: expected a file path, got Model(\\n    ir_version=8,\\n ...").
"""

from __future__ import annotations

import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

import deploytool as dt
from deploytool.choices import show
from deploytool.errors import ConfigError


def _model_file(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])),
              str(path))
    return path


@pytest.mark.parametrize("kind", ["onnx.ModelProto", "onnx_ir.Model"])
def test_a_model_in_memory_is_named_in_one_line_where_a_file_goes(tmp_path, kind):
    path = _model_file(tmp_path)
    model = onnx.load(str(path)) if kind == "onnx.ModelProto" else ir.load(path)
    before = path.read_bytes()
    cases = [
        (lambda: dt.transform(model, tmp_path / "o.onnx", dt.SliceConfig(width=0.5)), "src: expected a file path"),
        (lambda: dt.transform(path, model, dt.SliceConfig(width=0.5)), "dst: expected a file path"),
        (lambda: dt.inspect_model(model), "path: expected an .onnx file path"),
    ]
    for call, start in cases:
        with pytest.raises(ConfigError) as e:
            call()
        assert str(e.value) == f"{start}, got an in-memory model ({kind})"
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_show_keeps_a_many_line_repr_on_one_line():
    class Tall:
        def __repr__(self):
            return "Tall(\n    a=1,\n    b=2\n)"

    assert show(Tall()) == "Tall( a=1, b=2 )"
    assert show("a\nb") == repr("a\nb")  # a string's repr escapes its newlines already
