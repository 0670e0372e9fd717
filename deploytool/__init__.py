"""deploytool: Transformer encoders from PyTorch to small, fast, measured ONNX models.

The public API (imported lazily: ``import deploytool`` loads neither torch nor onnxruntime)::

    import deploytool as dt

    dt.export_model(dt.ExportConfig(model="minilm"), "m.onnx")            # validated against PyTorch
    print(dt.inspect_model("m.onnx").to_text())
    dt.transform("m.onnx", "s.onnx", dt.SliceConfig(width=0.5, depth=0.75))
    dt.transform("s.onnx", "t.onnx", dt.PackConfig(weights="ternary"))    # one verb, dispatch on the config
    report = dt.run_benchmark(dt.BenchConfig(models=("m.onnx", "s.onnx", "t.onnx")))
    pick = dt.fit_to_device(dt.FitConfig(model="m.onnx", profile="kirin990", output="phone.onnx"))
"""

from __future__ import annotations

import importlib

from deploytool import settings
from deploytool.deferred import defer_sympy

__version__ = "0.1.0"

# onnx_ir imports sympy (about 0.5 s) for arithmetic deploytool never does: load it on first use instead
defer_sympy(eager=settings.eager_imports())

# public name -> module holding it. A public name is never also a subpackage's name (``deploytool.export``
# was the function or the package depending on import order): the export verb is ``export_model``.
_WHERE = {
    # errors
    "DeployError": "deploytool.errors",
    "ConfigError": "deploytool.errors",
    # export and inspection
    "ExportConfig": "deploytool.export",
    "export_model": ("deploytool.export", "export"),
    "inspect_model": "deploytool.inspection",
    "find_structure": "deploytool.graph",
    # passes: configs and the one verb
    "transform": "deploytool.passes",
    "SliceConfig": "deploytool.passes.slice_subnetwork",
    "HeadPruneConfig": "deploytool.passes.prune_heads",
    "FFNPruneConfig": "deploytool.passes.prune_ffn",
    "ReorderConfig": "deploytool.passes.reorder",
    "Int8Config": "deploytool.passes.quantize_int8",
    "Fp16Config": "deploytool.passes.fp16",
    "PackConfig": "deploytool.passes.pack_weights",
    "RepackConfig": "deploytool.passes.repack",
    # measuring and reporting
    "BenchConfig": "deploytool.bench",
    "run_benchmark": "deploytool.bench",
    "load_profile": "deploytool.profiles",
    "ReportConfig": "deploytool.report",
    "build_report": "deploytool.report",
    "FitConfig": "deploytool.fit",
    "fit_to_device": ("deploytool.fit", "fit"),  # not "fit": deploytool.fit is the module
    # recipes
    "load_recipe": "deploytool.recipes",
    "run_recipe": "deploytool.recipes",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        module, attr = _WHERE[name] if isinstance(_WHERE[name], tuple) else (_WHERE[name], name)
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'deploytool' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
