"""Shared session-scoped fixtures (keep this file small; each fixture is documented).

``tiny_onnx`` exports random tiny encoders (``deploytool.testing.tiny``) once per test session and
caches them, so many tests can share one export.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _private_step_store(tmp_path_factory):
    """``deploytool run`` shares finished steps in ~/.cache/deploytool/steps by default: tests get a
    store of their own, never the user's."""
    old = os.environ.get("DEPLOYTOOL_CACHE_DIR")
    os.environ["DEPLOYTOOL_CACHE_DIR"] = str(tmp_path_factory.mktemp("step_store"))
    yield
    if old is None:
        os.environ.pop("DEPLOYTOOL_CACHE_DIR", None)
    else:
        os.environ["DEPLOYTOOL_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """Factory: ``tiny_onnx(family="bert", exporter="torch", task="feature-extraction", **shape) -> Path``.

    Exports ``tiny_model(family, task=task, **shape)`` (shape: layers, hidden, heads, ffn, vocab,
    max_pos, num_labels, seed; defaults 2 layers, hidden 32, 4 heads, FFN 64, vocab 100) with
    ``deploytool.export.export_loaded`` (validated against PyTorch, metadata written) and returns the
    .onnx path. Each (family, exporter, task, shape) is exported once per session; treat the file
    as read-only (copy it before editing). exporter: torch | optimum | dynamo.
    family: bert | roberta | distilbert | electra. task: feature-extraction | sequence-classification.
    """
    cache: dict[tuple, Path] = {}
    root = tmp_path_factory.mktemp("tiny_onnx")

    def make(family: str = "bert", exporter: str = "torch", task: str = "feature-extraction", **shape) -> Path:
        key = (family, exporter, task, tuple(sorted(shape.items())))
        if key not in cache:
            from deploytool.export import ExportConfig, export_loaded
            from deploytool.testing.tiny import tiny_model

            model = tiny_model(family, task=task, **shape)
            tag = "_".join(f"{k}{v}" for k, v in sorted(shape.items()))
            path = root / f"{family}_{exporter}_{task}{'_' + tag if tag else ''}.onnx"
            export_loaded(model, path, ExportConfig(model=f"tiny-{family}", task=task, exporter=exporter))
            cache[key] = path
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_torch_model():
    """Factory: ``tiny_torch_model(family="bert", task="feature-extraction", **shape)`` -> the same
    random PyTorch model ``tiny_onnx`` exports for these arguments (rebuilt each call: it is cheap and
    callers may modify it)."""
    def make(family: str = "bert", task: str = "feature-extraction", **shape):
        from deploytool.testing.tiny import tiny_model

        return tiny_model(family, task=task, **shape)

    return make


@pytest.fixture(scope="session")
def tiny_hf_folder(tmp_path_factory):
    """Factory: ``tiny_hf_folder(family="bert", task="feature-extraction", safetensors=True, **shape)
    -> Path`` of a Hugging Face folder (config.json + model.safetensors, or pytorch_model.bin when
    ``safetensors=False``) holding ``tiny_model(family, task=task, **shape)``; written once per
    session, read-only for callers. What ``deploytool export --model FOLDER`` takes."""
    cache: dict[tuple, Path] = {}
    root = tmp_path_factory.mktemp("tiny_hf")

    def make(family: str = "bert", task: str = "feature-extraction", safetensors: bool = True, **shape) -> Path:
        key = (family, task, safetensors, tuple(sorted(shape.items())))
        if key not in cache:
            from deploytool.testing.tiny import tiny_model

            folder = root / f"{family}_{task}_{len(cache)}"
            tiny_model(family, task=task, **shape).save_pretrained(folder, safe_serialization=safetensors)
            cache[key] = folder
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_fused_onnx(tiny_onnx, tmp_path_factory):
    """Factory: ``tiny_fused_onnx(family="bert", task="feature-extraction", **shape) -> Path``: the
    TorchScript ``tiny_onnx`` export after ``deploytool.runtime.fuse.fuse_transformer`` (ORT's BERT
    optimizer: com.microsoft Attention, SkipLayerNormalization, BiasGelu; EmbedLayerNormalization
    for bert). Cached per session, read-only for callers. DistilBERT's attention does not fuse."""
    cache: dict[tuple, Path] = {}
    root = tmp_path_factory.mktemp("tiny_fused")

    def make(family: str = "bert", task: str = "feature-extraction", **shape) -> Path:
        key = (family, task, tuple(sorted(shape.items())))
        if key not in cache:
            from deploytool.runtime.fuse import fuse_transformer

            src = tiny_onnx(family, "torch", task, **shape)
            cache[key] = fuse_transformer(src, root / src.name.replace(".onnx", ".fused.onnx")).path
        return cache[key]

    return make


@pytest.fixture
def unwritable_folder(tmp_path):
    """``unwritable_folder(where)``: a folder an output cannot be written in, ``where`` being "read-only-dir" (a
    0555 folder: skipped as root, who writes there anyway) or "read-only-fs" (procfs: no new files or folders,
    even for root)."""

    def make(where: str) -> Path:
        if where == "read-only-dir":
            if os.geteuid() == 0:
                pytest.skip("root writes into read-only directories; the read-only-fs case covers root")
            ro = tmp_path / "ro"
            ro.mkdir()
            ro.chmod(0o555)
            return ro
        if not os.path.isdir("/proc/self"):
            pytest.skip("no /proc")
        return Path("/proc/self")

    return make
