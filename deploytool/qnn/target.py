"""Which Snapdragon NPU a model is prepared for: the QNN HTP target and its preferred precisions.

A :class:`QnnTarget` is the frozen spec behind every QNN command. It comes from a device profile's
``npu:`` section (``device_profiles/snapdragon-*.yaml``) and is validated against the SoCs this
QNN SDK is known to compile for (:data:`KNOWN_SOCS`): an unknown ``soc_model`` is refused here,
because QNN itself only notices at device set-up and then silently leaves every node on the CPU.
"""

from __future__ import annotations

import dataclasses
import enum

from deploytool.choices import parse_enum
from deploytool.errors import ConfigError

__all__ = ["KNOWN_SOCS", "NpuPrecision", "QuantDtype", "QnnTarget", "load_target"]

# soc_model id (QNN SDK) -> (SoC name, Hexagon HTP architecture). Each id was checked to set up an
# HTP device with onnxruntime-qnn 2.7.0 (QNN SDK 2.51); an unknown id fails QNN's device creation.
KNOWN_SOCS: dict[int, tuple[str, str]] = {
    30: ("SM8350", "v68"),
    36: ("SM8450", "v69"),
    43: ("SM8550", "v73"),
    57: ("SM8650", "v75"),
    69: ("SM8750", "v79"),
}


class NpuPrecision(str, enum.Enum):
    """How the HTP computes: a QDQ-quantized model, or a float model run in fp16."""

    QUANTIZED = "quantized"
    FP16 = "fp16"


class QuantDtype(str, enum.Enum):
    """Integer types for QNN's QDQ activations and weights (value = the profile's spelling)."""

    UINT8 = "uint8"
    UINT16 = "uint16"
    INT8 = "int8"

    @property
    def short(self) -> str:
        return {"uint8": "u8", "uint16": "u16", "int8": "s8"}[self.value]

    def ort_type(self):
        from onnxruntime.quantization import QuantType

        return {"uint8": QuantType.QUInt8, "uint16": QuantType.QUInt16, "int8": QuantType.QInt8}[self.value]


_ACTIVATION_DTYPES = (QuantDtype.UINT8, QuantDtype.UINT16)
_WEIGHT_DTYPES = (QuantDtype.UINT8, QuantDtype.INT8)


def _dtype(value, field: str, allowed: tuple[QuantDtype, ...]) -> QuantDtype:
    return parse_enum(QuantDtype, value, field, allowed=allowed)


@dataclasses.dataclass(frozen=True)
class QnnTarget:
    """One Snapdragon HTP: soc_model (QNN's id), its HTP arch and the precisions to prepare for."""

    soc_model: int
    htp_arch: str = ""  # "v75"; filled from KNOWN_SOCS when empty
    soc_name: str = ""  # "SM8650"; filled from KNOWN_SOCS when empty
    activation_dtype: QuantDtype = QuantDtype.UINT16
    weight_dtype: QuantDtype = QuantDtype.UINT8
    precision: NpuPrecision = NpuPrecision.QUANTIZED
    profile: str = ""  # the device profile it came from, if any

    def __post_init__(self) -> None:
        if isinstance(self.soc_model, bool) or not isinstance(self.soc_model, int):
            raise ConfigError(f"soc_model: expected an integer QNN soc_model id, got {self.soc_model!r}")
        if self.soc_model not in KNOWN_SOCS:
            known = ", ".join(f"{k} ({n}/{a})" for k, (n, a) in sorted(KNOWN_SOCS.items()))
            raise ConfigError(f"soc_model: unknown QNN soc_model {self.soc_model}; known: {known}")
        name, arch = KNOWN_SOCS[self.soc_model]
        if self.htp_arch and self.htp_arch != arch:
            raise ConfigError(f"htp_arch: soc_model {self.soc_model} ({name}) has HTP {arch}, not {self.htp_arch}")
        if self.soc_name and self.soc_name != name:
            raise ConfigError(f"soc_name: soc_model {self.soc_model} is {name}, not {self.soc_name}")
        object.__setattr__(self, "htp_arch", arch)
        object.__setattr__(self, "soc_name", name)
        object.__setattr__(self, "activation_dtype",
                           _dtype(self.activation_dtype, "activation_dtype", _ACTIVATION_DTYPES))
        object.__setattr__(self, "weight_dtype", _dtype(self.weight_dtype, "weight_dtype", _WEIGHT_DTYPES))
        object.__setattr__(self, "precision", parse_enum(NpuPrecision, self.precision, "precision"))

    @property
    def label(self) -> str:
        """``SM8650 (soc_model 57, HTP v75)``."""
        return f"{self.soc_name} (soc_model {self.soc_model}, HTP {self.htp_arch})"

    @property
    def dtypes(self) -> str:
        """``u16/u8`` (activations/weights) or ``fp16``."""
        if self.precision is NpuPrecision.FP16:
            return "fp16"
        return f"{self.activation_dtype.short}/{self.weight_dtype.short}"

    def with_(self, **changes) -> QnnTarget:
        return dataclasses.replace(self, **changes)

    def provider_options(self) -> dict[str, str]:
        """QNN EP provider options for this chip (HTP backend, soc_model, htp_arch)."""
        opts = {"backend_type": "htp", "soc_model": str(self.soc_model), "htp_arch": self.htp_arch.lstrip("v")}
        if self.precision is NpuPrecision.FP16:
            opts["enable_htp_fp16_precision"] = "1"
        return opts

    def to_dict(self) -> dict:
        return {"soc_model": self.soc_model, "htp_arch": self.htp_arch, "soc_name": self.soc_name,
                "activation_dtype": self.activation_dtype.value, "weight_dtype": self.weight_dtype.value,
                "precision": self.precision.value, "profile": self.profile}


def _load_profile(name: str, dirs=()):
    """The device profile ``name`` (or a path to a YAML file), searched in ``dirs`` first."""
    from deploytool.profiles import load_profile

    return load_profile(name, tuple(dirs) or None)


def load_target(profile: str, profiles_dirs=(), **overrides) -> QnnTarget:
    """The :class:`QnnTarget` of a device profile's ``npu:`` section (``profiles_dirs`` searched before the
    shipped profiles, as everywhere else); ``overrides`` replace fields."""
    prof = _load_profile(profile, profiles_dirs)
    npu = getattr(prof, "npu", None)
    if npu is None:
        raise ConfigError(f"profile '{prof.name}': has no npu section (not a Snapdragon NPU profile); "
                          f"use one of the snapdragon-* profiles")
    if npu.backend != "qnn":
        raise ConfigError(f"profile '{prof.name}': npu.backend is {npu.backend!r}; only qnn is supported")
    fields = dict(soc_model=npu.soc_model, htp_arch=npu.htp_arch, soc_name=npu.soc_name,
                  activation_dtype=npu.activation_dtype, weight_dtype=npu.weight_dtype,
                  precision=npu.precision, profile=prof.name)
    fields.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return QnnTarget(**fields)
    except ConfigError as e:
        if overrides.get(str(e).split(":", 1)[0]) is not None:  # the caller's value (--act, --weights), not the file's
            raise
        raise ConfigError(f"profile '{prof.name}': npu.{e}") from None
