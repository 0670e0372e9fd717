"""``deploytool qnn compile``: the offline QNN context binary for one Snapdragon SoC.

ONNX Runtime's EPContext mechanism (session config ``ep.context_enable=1``,
``ep.context_file_path``, ``ep.context_embed_mode``) makes the QNN EP compile the HTP graph for the
target's ``soc_model``/``htp_arch`` ahead of time and write an ``EPContext`` ONNX model: with embed
mode 0 the compiled graph lies beside it in a ``.bin`` file, with 1 it is embedded in the model. A
phone then loads that model without compiling. This works on x86: the HTP compiler is real, only
its execution is emulated.

Strict mode is on (a context model with CPU fallback nodes would not be the NPU-only model the user
asked for). The output folder is built in a temporary folder beside it and renamed at the end, so
it exists complete or not at all. The compiled model is reloaded and run once on fixed inputs as a
proof before the rename.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import time
from pathlib import Path

import numpy as np
import onnx

from deploytool import scratch
from deploytool.choices import config
from deploytool.errors import ConfigError, DeployError
from deploytool.onnx_io import load_proto, make_staging_dir, output_folder_target, publish_staging_dir
from deploytool.qnn.check import compare, prepare
from deploytool.qnn.ep import (EMULATED_LABEL, QnnStrictError, is_emulated, probe_coverage, qnn_session, require_qnn,
                               sdk_info, short_reason)
from deploytool.qnn.quantize import QnnQuantConfig, calibration_inputs, check_seq_len
from deploytool.qnn.target import QnnTarget

logger = logging.getLogger(__name__)

__all__ = ["QnnCompileConfig", "QnnCompileResult", "compile_model"]

REPORT_NAME = "qnn_compile.json"


@config
@dataclasses.dataclass(frozen=True)
class QnnCompileConfig:
    target: QnnTarget
    quant: QnnQuantConfig | None = None
    seq_len: int | None = None  # None: 128, or the length the model's inputs are fixed at (a QDQ model's)
    embed: bool = False  # embed the context binary in the .onnx instead of a separate .bin
    tokenizer: str | None = None
    model_name: str = "model"  # stem of the files written

    def __post_init__(self) -> None:
        if not isinstance(self.target, QnnTarget):
            raise ConfigError(f"target: expected a QnnTarget, got {type(self.target).__name__}")
        check_seq_len(self.seq_len)
        if not self.model_name or "/" in self.model_name or self.model_name.startswith("."):
            raise ConfigError(f"model_name: expected a plain file stem, got {self.model_name!r}")


@dataclasses.dataclass
class QnnCompileResult:
    out_dir: Path
    report: dict

    def lines(self) -> list[str]:
        r = self.report
        out = [f"{r['model']} -> {self.out_dir}/ for {r['target']['soc_name']} (soc_model {r['target']['soc_model']}, "
               f"HTP {r['target']['htp_arch']}), {r['precision']}, seq {r['seq_len']}"]
        for f in r["files"]:
            out.append(f"  {f['name']}: {f['bytes'] / 1e6:.3f} MB")
        if r["prepare"].get("calibration"):
            out.append(f"  calibration: {r['prepare']['calibration']}")
        out.append(f"  context binary: {r['context_binary_bytes'] / 1e6:.3f} MB, compile {r['compile_s']:.2f} s "
                   f"(host compile time, not device latency), QNN SDK {r['sdk']['qnn_sdk']}, "
                   f"onnxruntime-qnn {r['sdk']['onnxruntime_qnn']}")
        out.append(f"  reload: {'ok' if r['reload']['ok'] else 'FAILED'}, max abs vs pre-compile HTP run "
                   f"{r['reload']['max_abs_vs_online_htp']:.3g}")
        out.append(f"  {r['label']}")
        return out


def compile_model(model_path: str | Path, out_dir: str | Path, cfg: QnnCompileConfig) -> QnnCompileResult:
    """Compile ``model_path`` for ``cfg.target`` into ``out_dir`` (EPContext model + .bin + report)."""
    from deploytool.choices import require_config

    require_config(cfg, QnnCompileConfig, "compile_model")  # a path or a dict: ConfigError, not AttributeError
    require_qnn()
    path, out = Path(model_path), Path(out_dir)
    out = output_folder_target(out)  # -o a link (to an empty or new folder): the files go where it points
    proto = load_proto(path)
    prep = prepare(proto, cfg.target, quant=cfg.quant, seq_len=cfg.seq_len, model_path=path, tokenizer=cfg.tokenizer)
    stage = make_staging_dir(out)
    try:
        with scratch.temporary_directory("deploytool-qnn-compile-") as tmp:
            src = Path(tmp, f"{cfg.model_name}.onnx")
            onnx.save(prep.model, str(src))
            ctx = stage / f"{cfg.model_name}_ctx.onnx"
            entries = {"ep.context_enable": "1", "ep.context_file_path": str(ctx),
                       "ep.context_embed_mode": "1" if cfg.embed else "0"}
            t0 = time.perf_counter()
            try:
                online, _ = qnn_session(src, cfg.target, strict=True, record=False, config_entries=entries)
            except DeployError as e:
                try:
                    cov = probe_coverage(src, cfg.target)
                    why = f"{len(cov.fallback)} node(s) not supported by the QNN HTP: {cov.describe_unsupported()}"
                except DeployError:
                    why = short_reason(e, 300)
                raise QnnStrictError(f"{path}: cannot compile for {cfg.target.soc_name} without CPU fallback: "
                                     f"{why}") from e
            compile_s = time.perf_counter() - t0
            if not ctx.is_file():
                raise DeployError(f"{path}: QNN wrote no EPContext model (ep.context_file_path={ctx})")
            feeds, _ = calibration_inputs(prep.model, seq_len=prep.seq_len, n=1, data=None, tokenizer=None, seed=7)
            name = online.get_outputs()[0].name
            y_online = online.run([name], feeds[0])[0]
            del online
            reload = _reload(ctx, cfg.target, feeds[0], y_online)
        files = [{"name": p.name, "bytes": p.stat().st_size} for p in sorted(stage.iterdir())]
        bins = [f for f in files if f["name"].endswith(".bin")]
        ctx_model = onnx.load(str(ctx), load_external_data=False)
        ep_nodes = [n for n in ctx_model.graph.node if n.op_type == "EPContext"]
        embedded = sum(len(a.s) for n in ep_nodes for a in n.attribute if a.name == "ep_cache_context")
        report = {
            "kind": "deploytool.qnn.compile", "version": 1, "model": str(path), "target": cfg.target.to_dict(),
            "label": EMULATED_LABEL if is_emulated() else "on device", "emulated": is_emulated(),
            "mode": prep.mode, "precision": prep.precision, "seq_len": prep.seq_len, "prepare": prep.stats,
            "context_model": ctx.name, "embed_mode": int(cfg.embed), "epcontext_nodes": len(ep_nodes),
            "binaries": [b["name"] for b in bins],
            "binary_target": _binary_target([stage / b["name"] for b in bins] or [ctx]),
            "context_binary_bytes": sum(b["bytes"] for b in bins) if bins else embedded,
            "files": files, "compile_s": round(compile_s, 3), "sdk": sdk_info(), "reload": reload,
            "latency_ms": None,
        }
        (stage / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
        publish_staging_dir(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return QnnCompileResult(Path(out_dir), report)  # named as given


_TARGET_RE = re.compile(rb"soc_type=(\w+);arch=(\d+)")


def _binary_target(files: list[Path]) -> dict:
    """The SoC and HTP arch the QNN compiler wrote into the context binary (``soc_type=SM8650;arch=75``)."""
    found = set()
    for f in files:
        for m in _TARGET_RE.finditer(f.read_bytes()):
            found.add((m.group(1).decode(), "v" + m.group(2).decode()))
    return {"soc_name": sorted(found)[0][0], "htp_arch": sorted(found)[0][1]} if len(found) == 1 else \
        {"found": sorted(found)}


def _reload(ctx: Path, target: QnnTarget, feed: dict, y_online: np.ndarray) -> dict:
    """Load the EPContext model (no compile) and run it once: proof that it is usable."""
    t0 = time.perf_counter()
    try:
        sess, _ = qnn_session(ctx, target, strict=True, record=False)
        y = sess.run([sess.get_outputs()[0].name], feed)[0]
    except DeployError as e:
        why = short_reason(e, 300)
        raise DeployError(f"{ctx.name}: the compiled context model does not reload ({why})") from e
    return {"ok": True, "load_s": round(time.perf_counter() - t0, 3),
            "max_abs_vs_online_htp": compare(y, y_online)["max_abs"]}
