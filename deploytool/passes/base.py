"""The one pass contract every graph transform follows.

A pass is an ``onnx_ir`` in-place pass built from one typed, already-validated config. ``call``
returns a :class:`DeployPassResult`: the model, whether it changed, statistics (what changed, sizes
before/after) and the list of things it skipped with the reason for each. A pipeline of passes is an
``onnx_ir.passes.Sequential`` and is itself a pass.

Preconditions (``requires``) raise :class:`deploytool.errors.DeployError` subclasses; onnx_ir wraps
them in ``PreconditionError`` and :meth:`DeployPass.__call__` unwraps them again so callers (and the
CLI) see the one-line error that names the problem.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import onnx_ir as ir

from deploytool.errors import DeployError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Skip:
    """Something a pass did not transform, and why (shown in reports, never silent)."""

    node: str
    reason: str


@dataclasses.dataclass
class DeployPassResult(ir.passes.PassResult):
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    skipped: list[Skip] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{k}={v}" for k, v in self.stats.items() if not isinstance(v, (dict, list))]
        if self.skipped:
            parts.append(f"skipped={len(self.skipped)}")
        return ", ".join(parts)


class DeployPass(ir.passes.InPlacePass):
    """Base class of deploytool's passes: in place, config-driven, unwrapping DeployErrors."""

    def __call__(self, model_or_result: ir.Model | ir.passes.PassResult, /) -> DeployPassResult:
        try:
            return super().__call__(model_or_result)  # type: ignore[return-value]
        except (ir.passes.PreconditionError, ir.passes.PostconditionError) as e:
            cause = e.__cause__
            if isinstance(cause, DeployError):
                raise cause from None
            raise


def file_size(path: str | os.PathLike) -> int:
    """Size of an ONNX file including its external data files."""
    p = Path(path)
    total = p.stat().st_size
    try:
        import onnx

        m = onnx.load(str(p), load_external_data=False)
        locations = set()
        for t in m.graph.initializer:
            for entry in t.external_data:
                if entry.key == "location":
                    locations.add(entry.value)
        for loc in locations:
            q = p.parent / loc
            if q.exists():
                total += q.stat().st_size
    except Exception:  # size of the main file is still right
        pass
    return total


def _ir_file_size(path, model: ir.Model) -> int:
    """Bytes of an ONNX file plus the external-data files its initializers point to (no re-parse)."""
    from pathlib import Path

    p = Path(path)
    total = p.stat().st_size
    seen: set[str] = set()
    for v in model.graph.initializers.values():
        t = v.const_value
        if isinstance(t, ir.ExternalTensor) and t.location not in seen:
            seen.add(t.location)
            f = p.parent / t.location
            if f.exists():
                total += f.stat().st_size
    return total


def _release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc), so the next big allocation does not add to RSS."""
    import ctypes
    import ctypes.util

    try:
        name = ctypes.util.find_library("c")
        if name:
            ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def run_pass_file(pass_: DeployPass, src: str | os.PathLike, dst: str | os.PathLike, *,
                  finalize=None) -> DeployPassResult:
    """Load ``src``, apply ``pass_``, run ``onnx.checker`` and save to ``dst`` atomically.

    The input file is never modified; ``dst`` appears only if everything succeeded. Adds
    ``bytes_before``/``bytes_after`` to the result's stats. Lean on memory for BERT-base-sized
    files: the input's IR is released as soon as the output protobuf exists and sizes are not found
    by parsing the files again (peak about twice the input file, not four times). ``finalize`` is an
    optional last proto-level rewrite (e.g. ``quantize_int8.residual_adds_to_sum``). The returned
    result's ``model`` is the output model.
    """
    import gc

    import onnx

    from deploytool import onnx_io

    onnx_io.check_output_path(dst, inputs=(src,))
    model = onnx_io.load_model(src)
    bytes_before = _ir_file_size(src, model)
    result = pass_(model)
    if not result.modified and finalize is None and bytes_before == os.path.getsize(src):
        # nothing changed (e.g. width = depth = 1): the output is a byte copy of the input
        import shutil

        with onnx_io.atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        result.stats["bytes_before"] = result.stats["bytes_after"] = bytes_before
        return result
    proto = ir.serde.serialize_model(result.model)
    if finalize is not None:
        finalize(proto)
    stats, skipped, modified = result.stats, result.skipped, result.modified
    del model, result
    gc.collect()
    _release_free_memory()

    def check(model) -> None:
        try:
            onnx.checker.check_model(model, full_check=False)
        except onnx.checker.ValidationError as e:  # a bug in the pass, not bad input
            raise RuntimeError(f"{type(pass_).__name__} produced an invalid model: {e}") from e

    # sum of weight bytes: proto.ByteSize() walks the whole message and is slow on big models
    weight_bytes = sum(len(t.raw_data) for t in proto.graph.initializer)
    if weight_bytes > 1_800_000_000:  # external data: let save_proto lay it out, then check by path
        onnx_io.save_proto(proto, dst)
        try:
            check(str(dst))
        except BaseException:
            os.unlink(dst)
            raise
        bytes_after = file_size(dst)
    else:
        data = proto.SerializeToString()
        check(data)  # the serialized bytes are needed for the file anyway
        with onnx_io.atomic_path(dst) as tmp:
            tmp.write_bytes(data)
        bytes_after = len(data)
        del data
    stats["bytes_before"] = bytes_before
    stats["bytes_after"] = bytes_after
    return DeployPassResult(model=ir.serde.deserialize_model(proto), modified=modified, stats=stats, skipped=skipped)
