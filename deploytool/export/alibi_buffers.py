"""Whole ALiBi tables held as PyTorch buffers, exported small and written as their computation.

JinaBERT v2's encoder keeps ``alibi = -slope_h * |i - j|`` as one buffer of ``[1, heads, N, N]`` for ``N =
max_position_embeddings`` (8192 in jina-embeddings-v2: 3.2 GB of float32) and cuts ``[:, :, :S, :S]`` from it.
Exported as it is, that buffer is a constant no TorchScript export can hold: its shape inference serializes the
Slice that reads it, over protobuf's 2 GB limit ("The serialized model is larger than the 2GiB limit ...";
huggingface/optimum#1800, "Cannot export jinaai models to onnx format because the model is > 2Gb"), and the dynamo
exporter writes a 3.7 GB file.

:func:`shrunk_alibi_buffers` swaps each such buffer (a 4-D float32 ``[1, H, N, N]`` buffer whose every value is
``t[0, h, 0, 1] * |i - j|``, checked by :func:`deploytool.graph.alibi.table_slopes`) for its ``[:, :, :n, :n]``
corner while the model is exported, and puts the original back afterwards. The export then holds the small corner
cut to the sequence, which :func:`deploytool.graph.alibi.compute_alibi_tables` writes as the computation of the
same float32 values for any length (the export's validation at 128 tokens runs beyond the corner, against
PyTorch with the whole buffer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["EXPORT_SIZE", "shrunk_alibi_buffers"]

#: the corner of an ALiBi buffer kept for the export (the trace runs on 8 tokens)
EXPORT_SIZE = 64


@contextlib.contextmanager
def shrunk_alibi_buffers(model, size: int = EXPORT_SIZE) -> Iterator[list[int]]:
    """While the block runs, every whole ALiBi buffer of ``model`` (a ``torch.nn.Module``) larger than ``size`` is
    its ``[:, :, :size, :size]`` corner (one corner per buffer, however many modules register it); yields the
    original buffers' sizes in bytes (empty: none). The originals are back afterwards, whatever happens."""
    import torch

    from deploytool.graph.alibi import table_slopes

    swapped: list[tuple[torch.nn.Module, str, torch.Tensor]] = []
    corners: dict[int, torch.Tensor | None] = {}  # id of a buffer -> its corner, None: not an ALiBi table
    sizes: list[int] = []
    try:
        for module in model.modules():
            for name, buf in list(module.named_buffers(recurse=False)):
                if buf.dim() != 4 or buf.dtype != torch.float32 or buf.device.type != "cpu":
                    continue
                shape = tuple(buf.shape)
                if shape[0] != 1 or shape[2] != shape[3] or shape[2] <= size:
                    continue
                if id(buf) not in corners:
                    alibi = table_slopes(buf.detach().numpy()) is not None
                    corners[id(buf)] = buf[:, :, :size, :size].clone() if alibi else None
                    if alibi:
                        sizes.append(buf.numel() * buf.element_size())
                if corners[id(buf)] is None:
                    continue
                setattr(module, name, corners[id(buf)])  # a registered buffer: it stays one (and non-persistent)
                swapped.append((module, name, buf))
        yield sizes
    finally:
        for module, name, buf in reversed(swapped):
            setattr(module, name, buf)
