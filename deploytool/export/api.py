"""``export(config, out_path)``: resolve, load, export, add metadata, validate, save atomically.

The file holds no exporter provenance: torch's dynamo exporter writes ``metadata_props`` on every node, value and
graph (stack traces with the exporting machine's paths, class hierarchies, FX node text, name scopes, export
signatures: 160,889 of a tiny BERT's 277,909 bytes, 216,621 of a tiny ALBERT's 300,031), which
:func:`deploytool.onnx_io.strip_exporter_metadata` removes before the file is validated and saved (the graph and its
numbers are unchanged; ``ExportResult.exporter_metadata_bytes_dropped`` says how much). The model-level
``metadata_props`` are deploytool's ``deploytool.*`` records (and any the exporter put there); ``producer_name`` and
``producer_version`` stay the exporter's. The passes write their outputs alike (:mod:`deploytool.onnx_io`)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import time
from pathlib import Path

import onnx

from deploytool import onnx_io, scratch
from deploytool.errors import ConfigError, DeployError
from deploytool.export.alibi_buffers import shrunk_alibi_buffers
from deploytool.export.config import ExportConfig, Exporter, ExportResult
from deploytool.export.hf import architecture, checkpoint_dtype, load_hf_model
from deploytool.models import resolve_model
from deploytool.onnx_io import check_output_path, check_writable

logger = logging.getLogger(__name__)

__all__ = ["export", "export_loaded", "check_writable", "METADATA_PREFIX", "read_metadata"]

METADATA_PREFIX = "deploytool."


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The ``deploytool.*`` metadata_props of a model, without the prefix."""
    return {p.key[len(METADATA_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(METADATA_PREFIX)}


def _set_metadata(model: onnx.ModelProto, values: dict[str, object]) -> None:
    keep = [p for p in model.metadata_props if not p.key.startswith(METADATA_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in values.items():
        model.metadata_props.add(key=METADATA_PREFIX + k, value=str(v))


def export_loaded(model, out_path: str | os.PathLike, config: ExportConfig, *, trained=None) -> ExportResult:
    """Export an already loaded transformers model (``config.model`` is only recorded). ``trained``: how its
    weights were trained quantization-aware (a :class:`deploytool.variant.Trained`, what :func:`export` reads from
    the folder's ``deploytool.json``), recorded in the file's ``deploytool.variant`` for ``pack``; None: nothing
    said (a plain model: ``pack`` calls its ternary/binary weights post-training)."""
    import torch

    from deploytool.export import validate as _validate
    from deploytool.choices import require_config

    require_config(config, ExportConfig, "export_loaded")
    if not isinstance(model, torch.nn.Module):  # a name or a folder: AttributeError "'str' has no attribute 'eval'"
        raise ConfigError(f"export_loaded: model must be a loaded PyTorch model (torch.nn.Module), got "
                          f"{type(model).__name__}; export_model(ExportConfig(model=...), out_path) takes a name or "
                          "a folder")
    if isinstance(out_path, bytes):  # as export() takes it
        out_path = os.fsdecode(out_path)
    out = check_writable(out_path)
    start = time.perf_counter()
    model = model.eval()
    task = config.task
    tables: list[int] = []  # the whole ALiBi buffers' sizes (exported as a small corner, then computed)
    removed = 0  # bytes of ALiBi constants the export's graph no longer holds
    for shrink in (True, False):
        with scratch.temporary_directory("deploytool-export-") as tmp:
            raw = Path(tmp) / "model.onnx"
            with shrunk_alibi_buffers(model) if shrink else contextlib.nullcontext([]) as shrunk:
                tables = tables or shrunk
                try:
                    opset = _export_raw(model, raw, config)
                except DeployError as e:
                    if not shrunk:
                        raise
                    logger.info("export with the ALiBi buffers' corners failed (%s); exporting the whole buffers", e)
                    continue
            try:
                proto = onnx.load(str(raw))  # external data (if any) is pulled in from tmp
            except Exception as e:
                raise DeployError(f"exporter {config.exporter.value} wrote an unreadable model ({e})") from e
        if config.exporter is Exporter.DYNAMO:
            proto = _dedupe(proto)
        if not tables:
            break
        proto, removed = _compute_tables(proto)
        if removed or not shrink:
            break
        # the corner is in the graph in a form the rewrite does not read: the export would stop at its length
        logger.warning("the exported ALiBi table is not a cut of one constant; exporting the whole buffer instead")
    dropped = onnx_io.strip_exporter_metadata(proto)
    if dropped:
        logger.info("exporter %s: %d bytes of node metadata (stack traces, ...) left out of the file",
                    config.exporter.value, dropped)
    outputs = [o.name for o in proto.graph.output]
    if task.output_name not in outputs:
        raise DeployError(f"exporter {config.exporter.value} produced outputs {outputs}, expected '{task.output_name}'")
    # keep only the task's output (optimum may add pooler_output for feature extraction)
    if len(outputs) > 1:
        keep = [o for o in proto.graph.output if o.name == task.output_name]
        del proto.graph.output[:]
        proto.graph.output.extend(keep)
    meta = dict(architecture(model))
    meta.update(exporter=config.exporter.value, task=task.value, opset=opset, source=config.source or config.model)
    if trained is not None:  # the record every pass keeps and pack reads (deploytool.variant)
        from deploytool.variant import Variant

        meta["variant"] = Variant(source=str(meta["source"]), trained=trained).to_json()
    _set_metadata(proto, meta)
    read = _graph_architecture(proto)  # what the passes will read (the config's names differ between families)
    if read and any(str(meta[k]) != str(v) for k, v in read.items()):
        logger.info("architecture metadata read from the graph: %s (the config says %s)", read,
                    {k: meta[k] for k in read})
        meta.update(read)
        _set_metadata(proto, meta)
    diffs: dict[str, float] = {}
    size = 0
    if onnx_io.weight_bytes(proto) > onnx_io.EXTERNAL_DATA_BYTES:
        # over protobuf's 2 GB limit there are no serialized bytes to validate: save with external data
        # under a temporary name, validate that file, and only then give it its name
        with onnx_io.staged_proto(proto, out, external=True) as tmp:
            if config.validate:
                diffs = _validate.compare(model, str(tmp), task.output_name, config.atol)
        size = (out.parent / onnx_io.data_file_name(out)).stat().st_size
    else:
        if config.validate:
            diffs = _validate.compare(model, proto.SerializeToString(), task.output_name, config.atol)
        onnx_io.save_proto(proto, out, external=False)
    return ExportResult(path=out, exporter=config.exporter, task=task, opset=int(opset), max_abs_diff=diffs,
                        atol=config.atol, validated=config.validate, file_size=out.stat().st_size + size,
                        seconds=time.perf_counter() - start, metadata={k: str(v) for k, v in meta.items()},
                        alibi_table_bytes_computed=sum(tables) if removed else 0,
                        exporter_metadata_bytes_dropped=dropped)


@contextlib.contextmanager
def _held_output():
    """The process's standard output and error (file descriptors 1 and 2) go to temporary files while the block
    runs; what was written there is passed on to them afterwards when the block succeeds, and only logged (at debug
    level: ``deploytool --debug`` shows it) when it fails. TorchScript's exporter prints its whole graph on standard
    output when it fails ("Torch IR graph at exception: ...", 246 kB for a BERT-base-sized model), before the error
    the command reports in one line."""
    import sys

    streams = []
    for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):  # the descriptors C/C++ code writes to
        try:
            saved = os.dup(fd)
        except OSError:  # not open in this process
            continue
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
        streams.append((stream, fd, saved, tempfile.TemporaryFile()))
    failed = True
    try:
        for _, fd, _, held in streams:
            os.dup2(held.fileno(), fd)
        yield
        failed = False
    finally:
        _flush_c_streams()  # C/C++ code's buffered output (stdio's stdout is fully buffered into a file) goes now
        for stream, fd, saved, held in streams:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                stream.flush()
            os.dup2(saved, fd)
            os.close(saved)
            held.seek(0)
            text = held.read()
            held.close()
            if failed and text:
                logger.debug("what the exporter printed before it failed:\n%s", text.decode(errors="replace"))
            elif text:
                os.write(fd, text)


def _flush_c_streams() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to ask (not POSIX)
        pass


def _export_raw(model, raw: Path, config: ExportConfig) -> int:
    """Export ``model`` to ``raw`` with ``config``'s exporter; returns the opset (an exporter's failure is a
    :class:`DeployError` naming it; what it printed then is logged at debug level, see :func:`_held_output`)."""
    from deploytool.export.torch_export import EXPORT_LOCK

    # one at a time also for the held output, which swaps the process's file descriptors 1 and 2: two at once
    # restored each other's temporary files, where the process's output then went for good
    with EXPORT_LOCK, _held_output():
        return _export_raw_held(model, raw, config)


def _export_raw_held(model, raw: Path, config: ExportConfig) -> int:
    try:
        if config.exporter is Exporter.OPTIMUM:
            from deploytool.export.optimum_export import export_optimum
            return export_optimum(model, raw, task=config.task, opset=config.opset)
        from deploytool.export.torch_export import export_torch
        return export_torch(model, raw, task=config.task, exporter=config.exporter, opset=config.opset)
    except DeployError:
        raise
    except Exception as e:  # e.g. an architecture optimum has no OnnxConfig for, an unsupported op
        msg = " ".join(str(e).split())[:240]
        raise DeployError(f"exporter {config.exporter.value} failed on {model.config.model_type} "
                          f"({type(e).__name__}: {msg})") from e


def _graph_architecture(proto: onnx.ModelProto) -> dict[str, int]:
    """num_layers, num_heads, head_size, hidden_size and ffn_size as the structure finder reads them in the exported
    graph (the figures every pass then works with and writes back); empty where it cannot read the graph (the
    config's figures stand)."""
    import onnx_ir as ir

    from deploytool.graph.structure import find_structure

    try:
        s = find_structure(ir.serde.deserialize_model(proto))
    except Exception as e:  # a family the finder does not read (ConvBERT): its passes refuse it themselves
        logger.debug("architecture metadata from the config: the structure finder cannot read the graph (%s)", e)
        return {}
    if not s.layers:
        return {}
    first = s.layers[0]
    return {"num_layers": s.num_layers, "num_heads": first.attention.num_heads,
            "head_size": first.attention.head_size, "hidden_size": s.hidden_size, "ffn_size": first.ffn_width}


def _dedupe(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` with each constant stored once: the dynamo exporter writes a weight read at several depths
    (ALBERT's shared layer) once per layer (:mod:`deploytool.passes.dedupe_initializers`)."""
    import onnx_ir as ir

    from deploytool.passes.dedupe_initializers import dedupe_initializers

    model = ir.serde.deserialize_model(proto)
    stats = dedupe_initializers(model)
    if not stats.tensors:
        return proto
    logger.info("dynamo export: %d stored copies of initializers merged (%d bytes)", stats.tensors, stats.bytes)
    return ir.serde.serialize_model(model)


def _compute_tables(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """``proto`` with its whole ALiBi tables written as their computation, and the bytes removed (0: none found,
    ``proto`` unchanged)."""
    import onnx_ir as ir

    from deploytool.graph.alibi import compute_alibi_tables

    model = ir.serde.deserialize_model(proto)
    removed = compute_alibi_tables(model)
    return (ir.serde.serialize_model(model), removed) if removed else (proto, 0)


def export(config: ExportConfig, out_path: str | os.PathLike) -> ExportResult:
    """Export ``config.model`` to ``out_path`` (validated unless ``config.validate`` is False)."""
    from deploytool.choices import as_path
    from deploytool.choices import require_config

    require_config(config, ExportConfig, "export_model")  # a model name or a dict: ConfigError, not AttributeError
    if isinstance(out_path, bytes):  # a bytes path names the file as a str does (transform takes one too)
        out_path = os.fsdecode(out_path)
    as_path(out_path, "out_path", "an .onnx file path")  # checked, kept as given ('out/' names a folder)
    check_writable(out_path)
    folder = resolve_model(config.model)
    with contextlib.suppress(OSError):  # the output may not replace a file of the model folder it reads
        check_output_path(out_path, inputs=tuple(f for f in Path(folder).iterdir() if f.is_file()))
    model = load_hf_model(folder, config.task, trust_remote_code=config.trust_remote_code)
    result = export_loaded(model, out_path, config, trained=_trained(folder))
    dtype = checkpoint_dtype(folder)
    return dataclasses.replace(result, checkpoint_dtype=dtype) if dtype not in (None, "float32") else result


def _trained(folder) -> object | None:
    """How the folder's weights were trained quantization-aware (``deploytool qat`` saves its record in the folder's
    ``deploytool.json``), or None."""
    from deploytool.variant import Trained

    return Trained.from_folder(folder)
