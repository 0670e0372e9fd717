"""Find an encoder's layers and their Q/K/V/O and FFN weights in an ONNX graph, by structure.

The public face of :mod:`deploytool.graph`: the contract's dataclasses live in
:mod:`deploytool.graph.roles` (its docstring is the contract), the recognition in
:mod:`deploytool.graph.finder`. Imports go one way only: roles <- finder <- structure.
"""

from __future__ import annotations

from deploytool.graph.finder import find_structure
from deploytool.graph.roles import (
    AttentionBlock,
    EncoderLayer,
    EncoderStructure,
    FFNBlock,
    FFNSite,
    HeadSite,
    Linear,
)

__all__ = [
    "AttentionBlock",
    "EncoderLayer",
    "EncoderStructure",
    "FFNBlock",
    "FFNSite",
    "HeadSite",
    "Linear",
    "find_structure",
]
