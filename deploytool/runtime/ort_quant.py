"""ONNX Runtime's quantizer (``onnxruntime.quantization``) for the int8 pass's ORT engine
(:mod:`deploytool.passes.quantize_int8`): file in, file out, with the pass's weight codes named as
deploytool names them.

Weight codes: ``int8`` (ORT's QInt8: symmetric, [-127, 127]) and ``uint8`` (QUInt8: asymmetric uint8 with a zero
point per column). The pass re-codes ORT's int8 weights for its ``int7`` and ``pairsafe`` codes itself. Dynamic quantization writes DynamicQuantizeLinear +
MatMulInteger (or the fused contrib ops); static writes QDQ with uint8 activations calibrated on ``feeds``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import numpy as np

from deploytool.errors import DeployError, UnavailableError
from deploytool.quiet_logs import quiet_logs

__all__ = ["quantization_missing", "onnxruntime_missing", "quantize_file", "WEIGHT_CODES"]

WEIGHT_CODES = ("int8", "uint8")


def onnxruntime_missing() -> bool:
    """True when onnxruntime is not installed (looked up, not imported)."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is None


def quantization_missing() -> str | None:
    """Why ``onnxruntime.quantization`` cannot be used here (its import error), or None when it can."""
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError as e:
        return str(e)
    return None


def quantize_file(src: str | os.PathLike, dst: str | os.PathLike, *, per_channel: bool, weight_codes: str,
                  nodes_to_exclude: Iterable[str] = (), external: bool = True,
                  feeds: list[Mapping[str, np.ndarray]] | None = None) -> None:
    """Quantize the model file ``src`` into ``dst``: dynamically, or statically (QDQ, uint8 activations)
    calibrated on ``feeds`` when given. ``external``: ``dst`` keeps its weights in a data file (needed over
    protobuf's 2 GB). ORT's root-logger advice stays quiet, logging's configuration unchanged (no root handler
    left behind); its failure is one :class:`DeployError` line, a missing quantizer an :class:`UnavailableError`."""
    import onnx

    try:
        from onnxruntime.quantization import QuantType
    except ImportError as e:
        raise UnavailableError(f"int8 quantization needs onnxruntime ({e})") from e
    if weight_codes not in WEIGHT_CODES:
        raise DeployError(f"int8: ORT's quantizer writes weight codes {', '.join(WEIGHT_CODES)}; got {weight_codes!r}")
    weight_type = QuantType.QUInt8 if weight_codes == "uint8" else QuantType.QInt8
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    exclude = list(nodes_to_exclude)
    # ORT logs "consider pre-processing" through logging.warning (the root logger, basicConfig() when it has no
    # handler): dropped for this thread, the user's logging set-up left as it was
    with quiet_logs(root=True):
        _quantize(src, dst, per_channel=per_channel, weight_type=weight_type, extra=extra, exclude=exclude,
                  external=external, feeds=feeds)


def _quantize(src, dst, *, per_channel: bool, weight_type, extra: dict, exclude: list[str], external: bool,
              feeds) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    try:
        if feeds is not None:
            from onnxruntime.quantization import CalibrationDataReader

            class _Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self.it = iter(feeds)

                def get_next(self):
                    return next(self.it, None)

            quantize_static(str(src), str(dst), _Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QUInt8, weight_type=weight_type, reduce_range=False,
                            extra_options=extra, nodes_to_exclude=exclude, use_external_data_format=external)
        else:
            quantize_dynamic(str(src), str(dst), per_channel=per_channel, weight_type=weight_type,
                             reduce_range=False, extra_options=extra, nodes_to_exclude=exclude,
                             use_external_data_format=external)
    except DeployError:
        raise
    except Exception as e:
        raise DeployError(f"int8: onnxruntime.quantization failed ({type(e).__name__}: {e})") from e
