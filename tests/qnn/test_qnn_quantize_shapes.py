"""qnn.quantize.static_shapes: a length past the position table in the one rule's words."""

from __future__ import annotations

import onnx
import pytest

from deploytool.errors import ConfigError


def test_static_shapes_says_a_roberta_table_as_inspection_does(tiny_onnx):
    """A sequence past the position table is refused by inspection.check_position_table (the words every command
    uses, a RoBERTa-style table's rows and usable length both said); qnn had its own rule, which said '(64
    positions)' of a 66-row table, and a default length past it was worded as a typed --seq-len."""
    from deploytool.qnn.quantize import static_shapes

    model = onnx.load(str(tiny_onnx("roberta", max_pos=64)))  # 66 rows, 64 usable
    assert static_shapes(model, 64)[1] == 64
    with pytest.raises(ConfigError) as e:
        static_shapes(model, 65)
    assert str(e.value) == ("--seq-len 65 is longer than the model's position table (64 positions: 66 rows, "
                            "RoBERTa-style ids start at padding_idx + 1 = 2); use a sequence length <= 64")
    with pytest.raises(ConfigError, match=r"^the default --seq-len 128 is longer than the model's position table "
                                          r"\(64 positions: 66 rows"):
        static_shapes(model, None)
