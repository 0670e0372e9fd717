"""``deploytool qnn check``: does this model run entirely on the HTP of this SoC, and how accurately.

The model runs through QNN's HTP graph compiler and backend (on x86: Qualcomm's emulator, so every
result is labelled EMULATED and no timing is reported). The check reports

- coverage: nodes ONNX Runtime gave to QNN vs the CPU EP (``record_ep_graph_assignment_info``), each
  CPU node with QNN's own reason (``enable_framework_op_trace``);
- strict mode: whether a session with ``session.disable_cpu_ep_fallback=1`` can be created;
- accuracy on fixed inputs: the HTP output vs the float model (CPU EP) and, for a QDQ model, vs the
  CPU EP running the same QDQ model (that difference is the HTP's own arithmetic);
- task accuracy on a dataset's test split, when one is given (classification models).

The model to run is prepared first (:func:`prepare`): a QDQ model runs as it is; a float model is
quantized for QNN (``quantize=True``) or run in fp16 (target precision fp16); a float model with
neither is refused, as it cannot run strictly on the HTP.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import onnx

from deploytool import scratch
from deploytool.choices import config
from deploytool.errors import ConfigError, DeployError, PassRefusedError
from deploytool.onnx_io import load_proto
from deploytool.qnn.ep import (EMULATED_LABEL, Coverage, QnnStrictError, coverage_of, is_emulated, qnn_session,
                               require_qnn, sdk_info)
from deploytool.qnn.quantize import (QnnQuantConfig, calibration_inputs, check_seq_len, is_quantized,
                                     quantize_for_qnn, static_shapes)
from deploytool.qnn.target import NpuPrecision, QnnTarget

logger = logging.getLogger(__name__)

__all__ = ["PreparedModel", "QnnCheckConfig", "QnnCheckReport", "check_model", "compare", "prepare"]


@config
@dataclasses.dataclass(frozen=True)
class QnnCheckConfig:
    """What ``qnn check`` does. ``quant`` (when set) quantizes a float input before the check."""

    target: QnnTarget
    quant: QnnQuantConfig | None = None
    seq_len: int | None = None  # None: 128, or the length the model's inputs are fixed at (a QDQ model's)
    reference: str | None = None  # the float model a QDQ input came from
    eval_data: str | None = None  # dataset for task accuracy (test split)
    fixed_data: str = "rotten-tomatoes"  # dev texts for the fixed inputs (when a tokenizer is known)
    eval_size: int = 100
    tokenizer: str | None = None
    fixed_inputs: int = 4
    strict: bool = False  # raise QnnStrictError when strict mode fails
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.target, QnnTarget):
            raise ConfigError(f"target: expected a QnnTarget, got {type(self.target).__name__}")
        check_seq_len(self.seq_len)
        for f, lo, hi in (("eval_size", 1, 100000), ("fixed_inputs", 1, 1000), ("seed", 0, 2**32 - 1)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"{f}: must be an integer in [{lo}, {hi}], got {v!r}")
        if self.quant is not None and self.target.precision is NpuPrecision.FP16:
            raise ConfigError("quant: the target's precision is fp16; quantizing and fp16 mode exclude each other")


@dataclasses.dataclass
class PreparedModel:
    """The model handed to QNN, the float model to compare against, and how it was made."""

    model: onnx.ModelProto
    reference: onnx.ModelProto | None
    mode: str  # "qdq" (given), "quantized" (by deploytool), "fp16"
    seq_len: int
    stats: dict
    precision: str = ""  # "u16/u8", "fp16", "qdq (as given)"


def prepare(model: onnx.ModelProto, target: QnnTarget, *, quant: QnnQuantConfig | None, seq_len: int | None,
            model_path: str | Path | None = None, reference: str | None = None, tokenizer: str | None = None
            ) -> PreparedModel:
    """Decide how ``model`` runs on ``target``'s HTP and make that model (static shapes)."""
    ref = None
    if reference is not None:
        ref = load_proto(reference)
        if is_quantized(ref):
            raise PassRefusedError(f"{reference}: the reference must be the float model, this one is quantized")
    if is_quantized(model):
        # what the user asked to do to a float model would silently not happen to this one
        name = Path(model_path).name if model_path else "the model"
        if quant is not None:
            raise PassRefusedError(f"{name}: the model is already quantized (QuantizeLinear/DequantizeLinear or "
                                   "integer ops): --quantize quantizes a float model; leave it out to run this one "
                                   "as it is, or give the float model")
        if target.precision is NpuPrecision.FP16:
            raise PassRefusedError(f"{name}: the model is already quantized (QuantizeLinear/DequantizeLinear or "
                                   "integer ops): fp16 mode (--fp16) runs a float model; leave it out to run this "
                                   "one as it is, or give the float model")
        run, seq = static_shapes(model, seq_len)
        ref_run = None
        if ref is not None:
            ref_run = static_shapes(ref, seq)[0]
            _check_reference(run, ref_run, reference, model_path)
        return PreparedModel(run, ref_run, "qdq", seq, {"note": "QDQ model run as given"}, "qdq (as given)")
    if target.precision is NpuPrecision.FP16:
        run, seq = static_shapes(model, seq_len)
        return PreparedModel(run, run, "fp16", seq, {"note": "float model run with enable_htp_fp16_precision=1"},
                             "fp16")
    if quant is None:
        raise PassRefusedError(
            f"{Path(model_path).name if model_path else 'model'}: model is fp32 (no QuantizeLinear/DequantizeLinear "
            "nodes): it cannot run strictly on the HTP "
            f"of {target.soc_name} without fp16 mode; pass --quantize (QNN QDQ, {target.dtypes}) or --fp16")
    if tokenizer and not quant.tokenizer:
        quant = dataclasses.replace(quant, tokenizer=tokenizer)
    q = quantize_for_qnn(model, quant, model_path=model_path)
    return PreparedModel(q.model, q.reference, "quantized", q.stats["seq_len"], q.stats, quant.dtypes)


def _check_reference(run: onnx.ModelProto, ref: onnx.ModelProto, reference, model_path) -> None:
    """ConfigError unless ``ref`` takes the same inputs as ``run`` and its first output (the one compared) has the
    same shape (both at the static shapes): a reference that is not the float model ``run`` came from."""
    def inputs(m: onnx.ModelProto) -> set[str]:
        inits = {t.name for t in m.graph.initializer}
        return {i.name for i in m.graph.input if i.name not in inits}

    def first_output(m: onnx.ModelProto) -> tuple[str, list]:
        o = m.graph.output[0]
        return o.name, [d.dim_value or d.dim_param or "?" for d in o.type.tensor_type.shape.dim]

    name = Path(model_path).name if model_path else "the model"
    a, b = inputs(run), inputs(ref)
    if a != b:
        raise ConfigError(f"--reference {reference}: its inputs ({', '.join(sorted(b))}) are not {name}'s "
                          f"({', '.join(sorted(a))}); give the float model {name} was quantized from")
    (on, os_), (rn, rs) = first_output(run), first_output(ref)
    if len(os_) != len(rs) or any(isinstance(x, int) and isinstance(y, int) and x != y for x, y in zip(os_, rs)):
        raise ConfigError(f"--reference {reference}: its output {rn} {rs} does not match {name}'s {on} {os_}; give "
                          f"the float model {name} was quantized from")


def compare(out: np.ndarray, ref: np.ndarray) -> dict:
    """max/mean absolute error, relative max error and the worst row's cosine similarity."""
    out = np.asarray(out, dtype=np.float64).reshape(ref.shape[0], -1)
    ref = np.asarray(ref, dtype=np.float64).reshape(ref.shape[0], -1)
    diff = np.abs(out - ref)
    cos = (out * ref).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1) + 1e-30)
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "ref_max_abs": float(np.abs(ref).max()),
            "rel_max": float(diff.max() / (np.abs(ref).max() + 1e-30)), "min_cosine": float(cos.min())}


def _real_tokens(feeds: list[dict]) -> np.ndarray | None:
    """Boolean [rows, seq] of unpadded tokens (from the attention mask), or None without a mask."""
    masks = [next((v for k, v in f.items() if "mask" in k.lower()), None) for f in feeds]
    if any(m is None for m in masks):
        return None
    return np.concatenate(masks, axis=0).astype(bool)


def _compare_tokens(out: np.ndarray, ref: np.ndarray, real: np.ndarray | None) -> dict | None:
    """``compare`` over the unpadded tokens only ([batch, seq, hidden] outputs), what pooling uses."""
    if real is None or ref.ndim != 3 or ref.shape[:2] != real.shape:
        return None
    return compare(out[real], ref[real])


def _run(session, feeds: list[dict]) -> np.ndarray:
    name = session.get_outputs()[0].name
    return np.concatenate([session.run([name], f)[0] for f in feeds], axis=0)


def _cpu_session(path: Path):
    from deploytool.runtime.session import build_session
    from deploytool.runtime.spec import SessionSpec

    return build_session(path, SessionSpec(providers=("cpu",), intra_op_threads=1))[0]


@dataclasses.dataclass
class QnnCheckReport:
    model: str
    target: QnnTarget
    mode: str
    precision: str
    seq_len: int
    coverage: Coverage
    strict_passed: bool
    strict_error: str | None
    accuracy: dict
    task: dict | None
    prepare: dict
    sdk: dict
    emulated: bool
    compile_s: float

    def to_dict(self) -> dict:
        return {"kind": "deploytool.qnn.check", "version": 1, "model": self.model, "target": self.target.to_dict(),
                "label": EMULATED_LABEL if self.emulated else "on device", "emulated": self.emulated,
                "mode": self.mode, "precision": self.precision,
                "seq_len": self.seq_len, "coverage": self.coverage.to_dict(),
                "strict": {"passed": self.strict_passed, "error": self.strict_error},
                "accuracy": self.accuracy, "task_accuracy": self.task, "prepare": self.prepare, "sdk": self.sdk,
                "latency_ms": None}

    def lines(self) -> list[str]:
        c = self.coverage
        out = [f"{self.model} on {self.target.label} [{self.target.profile}]",
               f"  {EMULATED_LABEL if self.emulated else 'on device'}",
               f"  mode: {self.mode} ({self.precision}), batch 1, seq {self.seq_len}",
               *([f"  calibration: {self.prepare['calibration']}"] if "calibration" in self.prepare else []),
               f"  coverage: {c.qnn_nodes}/{c.total} nodes on QNN HTP ({100 * c.fraction:.1f}%), "
               f"{len(c.fallback)} fallen back to CPU, {len(c.io_offloaded)} graph-I/O (de)quantization on CPU "
               f"by design, {c.qnn_subgraphs} QNN subgraph(s)"]
        for n in c.on_cpu[:10]:
            out.append(f"    CPU: {n.op_type} {n.name}: {n.reason}")
        if len(c.on_cpu) > 10:
            out.append(f"    ... {len(c.on_cpu) - 10} more on CPU")
        out.append(f"  strict (no CPU fallback): {'PASS' if self.strict_passed else 'FAIL'}"
                   + ("" if self.strict_passed else f": {self.strict_error}"))
        for k, v in self.accuracy.items():
            if isinstance(v, dict) and "max_abs" in v:
                k = k.replace("_real_tokens", " (unpadded tokens)")
                out.append(f"  {k}: max abs {v['max_abs']:.4g} (rel {v['rel_max']:.3g}), mean abs {v['mean_abs']:.3g},"
                           f" min cosine {v['min_cosine']:.5f}")
        if "inputs" in self.accuracy:
            out.append(f"  fixed inputs: {self.accuracy['inputs']}")
        if self.task:
            t = self.task
            out.append(f"  task accuracy on {t['dataset']} test[:{t['n']}]: HTP {t['htp']:.4f}, "
                       f"fp32 {self.task['fp32']:.4f}, agreement {self.task['agreement']:.4f}")
        return out


def check_model(model_path: str | Path, cfg: QnnCheckConfig) -> QnnCheckReport:
    """Run the QNN coverage/strict/accuracy check of ``model_path`` for ``cfg.target``."""
    from deploytool.choices import require_config

    require_config(cfg, QnnCheckConfig, "check_model")  # a path or a dict: ConfigError, not AttributeError
    require_qnn()
    from deploytool.models import TOKENIZER_HINT, export_source, find_tokenizer

    path = Path(model_path)
    proto = load_proto(path)
    # the tokenizer of the fixed inputs and the task accuracy, by the rule the quantization's calibration uses
    look = find_tokenizer(path, cfg.tokenizer, export_source(proto))
    if cfg.eval_data is not None and look.path is None:  # before any work
        raise ConfigError(f"--data {cfg.eval_data}: task accuracy needs the model's tokenizer and none was found "
                          f"({look.looked}): {TOKENIZER_HINT}")
    prep = prepare(proto, cfg.target, quant=cfg.quant, seq_len=cfg.seq_len, model_path=path,
                   reference=cfg.reference, tokenizer=cfg.tokenizer)
    with scratch.temporary_directory("deploytool-qnn-check-") as tmp:
        run_path, trace = Path(tmp, "model.onnx"), Path(tmp, "trace")
        trace.mkdir()
        onnx.save(prep.model, str(run_path))
        t0 = time.perf_counter()
        sess, _ = qnn_session(run_path, cfg.target, strict=False, trace_dir=trace)
        compile_s = time.perf_counter() - t0
        cov = coverage_of(sess, trace)
        if cov.qnn_nodes == 0:
            raise DeployError(f"{path}: QNN took no node of the model for {cfg.target.label} (HTP set-up failed or "
                              "nothing is supported)")
        strict_error = None
        try:  # the real thing: ORT refuses the session when a node would fall back to the CPU EP
            qnn_session(run_path, cfg.target, strict=True, record=False)
        except DeployError as e:
            strict_error = (f"{len(cov.fallback)} node(s) not supported by the QNN HTP: {cov.describe_unsupported()}"
                            if cov.fallback else " ".join(str(e).split()))
        if cfg.strict and strict_error:
            raise QnnStrictError(f"{path}: strict mode fails on {cfg.target.soc_name}: {strict_error}")

        tok = look.path
        # the dataset is passed with no tokenizer too: the note then says the tokenizer is what is missing
        feeds, note = calibration_inputs(prep.model, seq_len=prep.seq_len, n=cfg.fixed_inputs,
                                         data=cfg.eval_data or cfg.fixed_data,
                                         tokenizer=tok, seed=cfg.seed + 1000, split="dev")
        htp = _run(sess, feeds)
        acc: dict = {"inputs": note}
        real = _real_tokens(feeds)
        refs = {}
        if prep.reference is not None:
            ref_path = Path(tmp, "reference.onnx")
            onnx.save(prep.reference, str(ref_path))
            refs["htp_vs_fp32"] = _run(_cpu_session(ref_path), feeds)
        if prep.mode in ("qdq", "quantized"):
            refs["htp_vs_cpu_ep_same_qdq"] = _run(_cpu_session(run_path), feeds)
        for key, ref in refs.items():
            acc[key] = compare(htp, ref)
            tokens = _compare_tokens(htp, ref, real)
            if tokens is not None:
                acc[key + "_real_tokens"] = tokens
        task = None
        if cfg.eval_data is not None:
            task = _task_accuracy(sess, prep, tmp, cfg, look, path)
    return QnnCheckReport(model=str(path), target=cfg.target, mode=prep.mode, precision=prep.precision,
                          seq_len=prep.seq_len, coverage=cov,
                          strict_passed=strict_error is None, strict_error=strict_error, accuracy=acc, task=task,
                          prepare=prep.stats, sdk=sdk_info(), emulated=is_emulated(), compile_s=compile_s)


def _task_accuracy(sess, prep: PreparedModel, tmp: str, cfg: QnnCheckConfig, look, path: Path) -> dict:
    """``look``: the tokenizer found (:func:`deploytool.models.find_tokenizer`; check_model refused none)."""
    from deploytool.data import class_count, labels_folder, load_dataset, match_labels, model_labels
    from deploytool.qnn.quantize import _feeds, _tokenize

    tok = look.path
    if prep.reference is None:
        raise ConfigError("--data: task accuracy needs the float model (pass --reference for a QDQ model)")
    out = sess.get_outputs()[0]
    ds = load_dataset(cfg.eval_data, seed=cfg.seed, matched=True)  # '1' and '1.0': match_labels gives one class
    # the data's labels as the model's class ids, by name, as eval reads them (they were taken by sorted index:
    # fresh/rotten scored as classes 0/1 of a {0: negative, 1: positive} model, the accuracy of the swapped classes)
    names_from = labels_folder(path, look.folder)
    id2label = model_labels(names_from)
    width = out.shape[-1] if len(out.shape) == 2 and isinstance(out.shape[-1], int) else None
    class_ids, note = match_labels(ds.label_names, id2label, f"--data {cfg.eval_data}", width, model=str(names_from))
    n = class_count(id2label, width) if id2label else (width or ds.num_labels)
    if len(out.shape) != 2 or out.shape[-1] != n:
        raise ConfigError(f"--data {cfg.eval_data}: task accuracy needs a classifier with {n} logits; "
                          f"{path.name} outputs {out.name} {out.shape}")
    split = ds.split("test").head(cfg.eval_size)
    texts = list(split.texts) if split.pairs is None else list(zip(split.texts, split.pairs))
    ids, mask, types = _tokenize(tok, texts, prep.seq_len)
    feeds = _feeds(prep.model, ids, mask, types)
    ref_path = Path(tmp, "reference.onnx")
    htp = _run(sess, feeds).argmax(-1)
    fp32 = _run(_cpu_session(ref_path), feeds).argmax(-1)
    y = class_ids[np.asarray(split.labels, dtype=np.int64)]
    return {"dataset": cfg.eval_data, "split": "test", "n": len(y), "htp": float((htp == y).mean()),
            "fp32": float((fp32 == y).mean()), "agreement": float((htp == fp32).mean()),
            **({"label_note": note} if note else {})}
