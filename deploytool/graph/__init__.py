"""The structure finder: which graph node is which layer's Q/K/V/O/FFN, found by graph structure."""

from deploytool.graph.structure import (
    AttentionBlock,
    EncoderLayer,
    EncoderStructure,
    FFNBlock,
    HeadSite,
    Linear,
    find_structure,
)

__all__ = ["AttentionBlock", "EncoderLayer", "EncoderStructure", "FFNBlock", "HeadSite", "Linear", "find_structure"]
