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


def run_pass_file(pass_: DeployPass, src: str | os.PathLike, dst: str | os.PathLike, *,
                  check: bool = True, finalize=None) -> DeployPassResult:
    """Load ``src``, apply ``pass_``, run ``onnx.checker`` and save to ``dst`` atomically.

    The input file is never modified; ``dst`` appears only if everything succeeded. Adds
    ``bytes_before``/``bytes_after`` to the result's stats.
    """
    import onnx

    from deploytool import onnx_io

    onnx_io.check_output_path(dst, inputs=(src,))
    model = onnx_io.load_model(src)
    result = pass_(model)
    proto = ir.serde.serialize_model(result.model)
    if finalize is not None:  # a last proto-level rewrite, e.g. quantize_int8.residual_adds_to_sum
        finalize(proto)
    if check:
        try:
            onnx.checker.check_model(proto, full_check=False)
        except onnx.checker.ValidationError as e:  # a bug in the pass, not bad input
            raise RuntimeError(f"{type(pass_).__name__} produced an invalid model: {e}") from e
    onnx_io.save_proto(proto, dst)
    result.stats.setdefault("bytes_before", file_size(src))
    result.stats["bytes_after"] = file_size(dst)
    return result
