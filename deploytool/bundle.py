"""``deploytool bundle M.onnx --profile snapdragon-sm8650 -o bundle/``: what an Android or iOS app needs.

The folder (written complete or not at all: built in a temporary folder beside it, renamed at the end):

- ``model.ort``: the model in ONNX Runtime's mobile (ORT) format (:mod:`deploytool.runtime.mobile`),
  optimization style ``runtime`` when the profile prefers a mobile EP (XNNPACK, NNAPI, CoreML, QNN: the
  nodes stay plain for the EP to claim), ``fixed`` when it runs on the CPU EP;
- ``required_operators.config``: the operators a reduced ONNX Runtime Mobile build must keep
  (``build.py --include_ops_by_config``);
- ``tokenizer/``: the tokenizer's files, found by the one rule of every command
  (:func:`deploytool.models.find_tokenizer`: ``tokenizer`` given, else beside the model, else in the model folder
  the export recorded), else the manifest says none were found and where it looked;
- ``qnn/``: the QNN context binary (``deploytool qnn compile``: EPContext model + ``.bin``) where the
  profile has an NPU and onnxruntime-qnn is installed; otherwise the manifest says why not;
- ``manifest.json`` (``kind: deploytool.bundle``, version 1): files and sizes, the input/output
  signature, the session settings the profile asks for (EPs in order with their options, intra-op
  threads, session config entries), and a fixed input (seeded token ids at ``seq_len``) with the
  outputs ONNX Runtime computed on this host *from the .ort file*, and their difference to the
  source .onnx run on the same input.

A profile without a mobile EP (an x86 server, a Graviton with ACL) is refused in one line, and so is what the
QNN options ask that cannot be done, before anything is written: a QNN option with ``--no-qnn`` or on a profile
without an NPU, a ``--qnn-seq-len`` past the model's position table, a ``--qnn-calib-data`` that is not a dataset
or has no tokenizer to read it with. The manifest's ``qnn.calibration`` is the compile's own note.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deploytool.choices import OWN_CHECK, config
from deploytool.errors import ConfigError, DeployError, not_a_file
from deploytool.models import TOKENIZER_FILES  # re-exported: the files a bundle copies
from deploytool.onnx_io import make_staging_dir, output_folder_target, publish_staging_dir
from deploytool import units
from deploytool.units import MB, fmt_bytes
from deploytool.validation import check_calibration_columns

if TYPE_CHECKING:
    import onnx_ir as ir

logger = logging.getLogger(__name__)

__all__ = ["BundleConfig", "BundleResult", "MOBILE_EPS", "QNN_CALIBRATION_SIZE", "QNN_SEQ_LEN", "TOKENIZER_FILES",
           "make_bundle", "ort_size_mb", "phone_bundle_style", "shipped_size"]

KIND = "deploytool.bundle"
MANIFEST = "manifest.json"
#: the execution providers of ONNX Runtime's Android/iOS packages (besides the CPU EP)
MOBILE_EPS = ("XNNPACK", "NNAPI", "COREML", "QNN")
#: the QNN options' values when not given (BundleConfig's None); the sequence length is the qnn commands' own
#: default (a QDQ model whose inputs are fixed at a length is compiled at that length instead)
QNN_SEQ_LEN = units.QNN_SEQ_LEN
QNN_CALIBRATION_SIZE = 8
#: the BundleConfig fields that only the QNN context binary uses
_QNN_FIELDS = ("qnn_seq_len", "qnn_calibration", "qnn_calibration_size", "qnn_calibration_text_col",
               "qnn_calibration_text_pair_col")


@config
@dataclasses.dataclass(frozen=True)
class BundleConfig:
    """profile: a :class:`~deploytool.profiles.Profile` with a mobile EP. seq_len: length of the fixed
    input whose outputs the manifest records. tokenizer: a tokenizer.json or vocab.txt file, or a folder holding one
    (None: :func:`deploytool.models.find_tokenizer`'s rule, beside the model, else in the model folder the export
    recorded). qnn: try the QNN context binary where the profile has an NPU, compiled for the
    fixed length ``qnn_seq_len`` (the HTP runs static shapes; None: :data:`QNN_SEQ_LEN`) and calibrated on
    ``qnn_calibration`` (a deploytool dataset name or file, which needs a tokenizer; None: seeded token ids),
    ``qnn_calibration_size`` inputs (None: :data:`QNN_CALIBRATION_SIZE`), a file's texts read from its
    ``qnn_calibration_text_col`` (None: ``text``, or a GLUE pair of columns found by name) and a sentence pair's
    second texts from ``qnn_calibration_text_pair_col``. A QNN field set (not None) where no
    binary is compiled (``qnn=False``, a profile without an NPU) is refused: it would do nothing."""

    profile: Any = dataclasses.field(hash=False)  # out of the hash (a profile holds mappings), still compared
    seq_len: int = 16
    seed: int = 0
    tokenizer: Path | None = None
    qnn: bool = True
    qnn_seq_len: int | None = None
    qnn_calibration: str | None = None
    qnn_calibration_size: int | None = None
    # (checked by validation.check_calibration_columns alone, in the words qnn quantize and quantize --static use)
    qnn_calibration_text_col: str | None = dataclasses.field(default=None, metadata=OWN_CHECK)
    qnn_calibration_text_pair_col: str | None = dataclasses.field(default=None, metadata=OWN_CHECK)
    # a packed model's linear weights moved to MatMulNBits 2-bit first (passes.repack, runtime memory), so the
    # .ort keeps them 2 bits (the speed/densest unpacking is folded into int8 weights by the converter)
    repack_memory: bool = False

    def __post_init__(self) -> None:
        from deploytool.profiles.schema import Profile

        if not isinstance(self.profile, Profile):
            raise ConfigError(f"profile: expected a device Profile, got {type(self.profile).__name__}")
        eps = [ep.name for ep in self.profile.execution_providers]
        if phone_bundle_style(self.profile) is None:
            raise ConfigError(f"profile '{self.profile.name}' has no mobile execution provider (its EPs: "
                              f"{', '.join(eps)}); a phone bundle needs one of {', '.join(MOBILE_EPS)}")
        from deploytool.units import MAX_SEQ_LEN

        for f, hi in (("seq_len", MAX_SEQ_LEN), ("qnn_seq_len", MAX_SEQ_LEN), ("qnn_calibration_size", 4096)):
            v = getattr(self, f)
            if (v is not None or f == "seq_len") and (isinstance(v, bool) or not isinstance(v, int)
                                                      or not 1 <= v <= hi):
                raise ConfigError(f"{f}: must be an integer in [1, {hi}], got {v!r}")
        given = [f for f in _QNN_FIELDS if getattr(self, f) is not None]
        if given and not self.qnn:  # as qnn compile refuses --quantize with --fp16
            # the CLI puts the options in place of the fields: '--qnn-seq-len: ..., which --no-qnn turns off'
            raise ConfigError(f"{given[0]}: sets the QNN context binary, which qnn=False turns off; "
                              "the two exclude each other")
        if given and self.profile.npu is None:
            raise ConfigError(f"{given[0]}: sets the QNN context binary, and profile '{self.profile.name}' has no "
                              "NPU (no npu section), so none is compiled; leave the QNN options out")
        from deploytool.qnn.quantize import check_calibration_data

        check_calibration_data(self.qnn_calibration, "qnn_calibration")
        check_calibration_columns(self.qnn_calibration_text_col, self.qnn_calibration_text_pair_col,
                                  names=("qnn_calibration_text_col", "qnn_calibration_text_pair_col"),
                                  data=self.qnn_calibration, data_name="qnn_calibration", text_default=None)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed: must be a non-negative integer, got {self.seed!r}")
        if self.tokenizer is not None:
            from deploytool.models import find_tokenizer

            t = Path(self.tokenizer)
            find_tokenizer(None, t)  # a path that is no tokenizer: 'tokenizer: ...', before any work
            object.__setattr__(self, "tokenizer", t)

    @property
    def style(self) -> str:
        """:func:`phone_bundle_style` of the profile (never None here: ``__post_init__`` refused that)."""
        return phone_bundle_style(self.profile)


@dataclasses.dataclass
class BundleResult:
    out_dir: Path
    manifest: dict[str, Any]

    def lines(self) -> list[str]:
        m = self.manifest
        out = [f"{m['source']['model']} -> {self.out_dir}/ for {m['profile']['name']} "
               f"({m['ort']['optimization_style']} optimizations)"]
        out += [f"  {f['name']}: {f['bytes'] / 1e6:.3f} MB" for f in m["files"]]
        if m["source"].get("repacked"):
            r = m["source"]["repacked"]
            out.append(f"  repacked for the .ort: {r['weights_converted']} weights as MatMulNBits 2-bit "
                       f"({r['bytes'] / 1e6:.3f} MB .onnx)")
        if m["ort"].get("note"):
            out.append(f"  note: {m['ort']['note']}")
        v = m["verification"]
        out.append(f"  host check: .ort vs .onnx on the fixed input (seq {v['seq_len']}): max abs {v['max_abs_vs_onnx']:.3g}")
        t = m["tokenizer"]
        # the files and where they came from, or why none: one line
        if t["files"]:
            out.append(f"  tokenizer: {t['files']} from {t['source']} ({t['found']})"
                       + (f"; {t['note']}" if t["note"] else ""))
        else:
            out.append(f"  tokenizer: {t['note']}")
        q = m["qnn"]
        out.append(f"  QNN context binary: {'yes, ' + q['dir'] if q['produced'] else 'no (' + q['why'] + ')'}")
        if q["produced"]:
            out.append(f"  QNN calibration: {q['calibration']}")
        return out


def _session(cfg: BundleConfig) -> dict[str, Any]:
    prof = cfg.profile
    eps = [{"name": ep.name, "ort_name": ep.provider.value, "options": prof.provider_options(ep)}
           for ep in prof.execution_providers]
    from deploytool.runtime.mobile import RUNTIME_OPT_CONFIG

    return {"execution_providers": eps, "intra_op_num_threads": prof.threads,
            "config_entries": dict(RUNTIME_OPT_CONFIG) if cfg.style == "runtime" else {}}


def _find_tokenizer(model: Path, cfg: BundleConfig, graph: ir.Model):
    """The tokenizer the bundle ships and the QNN compile calibrates with: one lookup, the rule of every command."""
    from deploytool.models import export_source, find_tokenizer

    return find_tokenizer(model, cfg.tokenizer, export_source(graph))


def _tokenizer(look, stage: Path) -> dict[str, Any]:
    if look.path is None:
        return {"files": [], "source": None,
                "note": f"no tokenizer found ({look.looked}); pass --tokenizer to include it"}
    (stage / "tokenizer").mkdir()
    names = []
    for f in look.files:
        # a file given under a name of its own is shipped under the name an app loads (tokenizer.json, vocab.txt)
        name = f.name if f.name in TOKENIZER_FILES else "vocab.txt" if f.suffix.lower() == ".txt" else "tokenizer.json"
        shutil.copy(f, stage / "tokenizer" / name)
        names.append(f"tokenizer/{name}")
    return {"files": names, "source": str(look.folder), "found": look.how, "note": look.note}


def tokenizer_vocab_size(path: Path) -> int | None:
    """How many token ids the tokenizer ``path`` (a tokenizer.json or vocab.txt, or a folder holding one) can
    produce (tokenizer.json with its added tokens, else vocab.txt's lines); None when neither is there (or the
    tokenizers library is not installed). A tokenizer.json the tokenizers library cannot read is a ConfigError
    naming it: the bundle would ship a file no app can load."""
    path = Path(path)
    if path.is_file():
        tj, vt = (path, None) if path.suffix.lower() != ".txt" else (None, path)
    else:
        tj, vt = path / "tokenizer.json", path / "vocab.txt"
    if tj is not None and tj.is_file():
        try:
            from tokenizers import Tokenizer
        except ImportError:
            return None
        try:
            return int(Tokenizer.from_file(str(tj)).get_vocab_size(with_added_tokens=True))
        except Exception as e:  # noqa: BLE001 - the tokenizers library's own errors (JSON, schema) all mean one thing
            why = " ".join(str(e).split())[:200] or type(e).__name__
            raise ConfigError(f"{tj}: not a tokenizer the tokenizers library can read ({why})") from None
    if vt is not None and vt.is_file():
        try:
            with vt.open(encoding="utf-8", errors="replace") as f:
                return sum(1 for line in f if line.strip())
        except OSError as e:
            raise ConfigError(f"{vt}: cannot be read ({e.strerror or e})") from None
    return None


def _check_tokenizer_fits(look, plan) -> None:
    """ConfigError, before anything is written, when the tokenizer to bundle makes ids past the model's word table:
    on the phone those ids read past the table (ONNX Runtime's Gather fails, or an app gets garbage)."""
    if look.path is None:
        return
    src = look.path
    n = tokenizer_vocab_size(src)  # read even when there is no table to compare with: an unreadable one is refused
    if plan.vocab_source == "default":  # the table was not found: nothing to compare with
        return
    if n is not None and n > plan.vocab:
        raise ConfigError(f"tokenizer {src} has {n} token ids but the model's word table ({plan.vocab_source}) has "
                          f"{plan.vocab} rows: ids {plan.vocab}-{n - 1} would read past it on the device; bundle the "
                          "tokenizer the model was trained with (--tokenizer)")


def _qnn_preflight(model: Path, cfg: BundleConfig, graph: ir.Model, look=None) -> str | None:
    """Before anything is written: refuse (ConfigError naming the option) what the user asked of the QNN binary
    that cannot be done; for the defaults, say why no binary will be compiled (None: try). ``graph``: the model
    loaded, without its external data; ``look``: the tokenizer found (None: looked for here)."""
    from deploytool.inspection import check_position_table

    if cfg.profile.npu is None or not cfg.qnn:
        return None  # _qnn says why; a QNN option given with these was refused by BundleConfig
    if cfg.qnn_seq_len is not None:  # refused in --seq-len's words (inspection's one rule)
        check_position_table(graph, cfg.qnn_seq_len, str(model), option="--qnn-seq-len")
    else:  # the length the QNN step will use: a QDQ model fixed at a length keeps it
        from deploytool.onnx_io import load_proto
        from deploytool.qnn.quantize import default_seq_len

        seq = default_seq_len(load_proto(model, load_external_data=False))
        try:
            check_position_table(graph, seq, None, option="the default --qnn-seq-len")
        except ConfigError as e:  # not asked for: the bundle is made without the binary, and the manifest says why
            return f"{e} (pass --qnn-seq-len)"
    if cfg.qnn_calibration is not None:  # a named dataset is calibrated on, or refused: never seeded ids instead
        from deploytool.models import TOKENIZER_HINT

        look = look or _find_tokenizer(model, cfg, graph)
        if look.path is None:
            raise ConfigError(f"--qnn-calib-data {cfg.qnn_calibration}: its texts need a tokenizer to become token "
                              f"ids and none is known ({look.looked}): {TOKENIZER_HINT}")
        from deploytool.data import calibration_texts

        try:  # its columns now, not after the .ort conversion (a compile that fails leaves the bundle without it)
            calibration_texts(cfg.qnn_calibration, n=1, text_col=cfg.qnn_calibration_text_col or "text",
                              text_pair_col=cfg.qnn_calibration_text_pair_col)
        except DeployError as e:
            raise ConfigError(f"--qnn-calib-data: {e}") from None
    return None


def _qnn(model: Path, cfg: BundleConfig, stage: Path, skip: str | None = None,
         tokenizer: Path | None = None) -> dict[str, Any]:
    prof = cfg.profile
    if prof.npu is None:
        return {"produced": False, "why": f"profile '{prof.name}' has no NPU (no npu section)"}
    if not cfg.qnn:
        return {"produced": False, "why": "not asked for (bundle --no-qnn)"}
    if skip is not None:
        return {"produced": False, "why": skip}
    seq = cfg.qnn_seq_len  # None: QNN_SEQ_LEN, or the length a QDQ model's inputs are fixed at
    try:
        from deploytool.qnn import QnnCompileConfig, compile_model
        from deploytool.qnn.ep import short_reason
        from deploytool.qnn.quantize import QnnQuantConfig
        from deploytool.qnn.target import load_target

        from deploytool.onnx_io import load_proto
        from deploytool.qnn.quantize import is_quantized

        target = load_target(prof.path or prof.name)
        quant = None
        qdq = is_quantized(load_proto(model, load_external_data=False))  # compiled as it is: nothing to calibrate
        if target.precision.value == "quantized" and not qdq:
            quant = QnnQuantConfig(activation_dtype=target.activation_dtype, weight_dtype=target.weight_dtype,
                                   seq_len=seq, calibration_data=cfg.qnn_calibration,
                                   calibration_size=cfg.qnn_calibration_size or QNN_CALIBRATION_SIZE,
                                   calibration_text_col=cfg.qnn_calibration_text_col or "text",
                                   calibration_text_pair_col=cfg.qnn_calibration_text_pair_col,
                                   calibration_fallback=False,
                                   tokenizer=str(tokenizer) if tokenizer else None, seed=cfg.seed)
        res = compile_model(model, stage / "qnn", QnnCompileConfig(target=target, quant=quant,
                                                                    seq_len=seq, model_name="model"))
    except ImportError as e:
        return {"produced": False, "why": " ".join(str(e).split())}
    except DeployError as e:
        return {"produced": False, "why": short_reason(e, 300)}
    r = res.report
    return {"produced": True, "dir": "qnn", "context_model": f"qnn/{r['context_model']}",
            "binaries": [f"qnn/{b}" for b in r["binaries"]], "target": r["target"], "seq_len": r["seq_len"],
            "label": r["label"], "precision": r["precision"],
            # what the compile really calibrated on (its own note), not what was asked
            "calibration": r["prepare"].get("calibration", "none") if quant is not None else
            "none (the model's own quantization)" if qdq else "none (fp16)",
            "note": f"compiled for sequence length {r['seq_len']} exactly (static shapes on the HTP): pad or "
                    "truncate the app's input to it"}


def phone_bundle_style(profile) -> str | None:
    """The ORT-format optimization style ``deploytool bundle`` converts with for ``profile`` (``runtime`` when
    its first EP is a mobile one, so the nodes stay plain for it; else ``fixed``), or None for a profile the
    bundle refuses (no mobile EP and no NPU: its model ships as the .onnx file)."""
    eps = [ep.name for ep in profile.execution_providers]
    if not any(name in MOBILE_EPS for name in eps) and profile.npu is None:
        return None
    return "runtime" if eps[0] in MOBILE_EPS else "fixed"


def ort_size_mb(path: Path, style: str, work: Path | None = None) -> float:
    """The size of the ``model.ort`` that ``deploytool bundle`` makes of ``path`` (converted, then removed): a
    packed file's speed/densest weights are folded into int8 there (MatMulNBits' 2-bit ones are not)."""
    from deploytool.onnx_io import external_data_files
    from deploytool.runtime.mobile import convert_to_ort

    from deploytool import scratch as scratch_dirs

    out = Path(scratch_dirs.mkdtemp(f"{path.stem}.ort-", work))
    try:
        ort_path, _ = convert_to_ort(path, external_data_files(path), out, style=style)
        return ort_path.stat().st_size / MB
    finally:
        scratch_dirs.remove(out)


def shipped_size(path: str | os.PathLike, profile, file_mb: float, work: Path | None = None) -> tuple[float, str]:
    """What a size budget of ``profile`` weighs for the model at ``path`` (``file_mb``: its file and data), and
    of what: ``(file_mb, "file")`` for a profile that is not bundled; on one that is, the bundle's ``model.ort``
    (:func:`ort_size_mb`), ``"model.ort"``; or the file again, saying why no .ort was made."""
    style = phone_bundle_style(profile)
    if style is None:
        return file_mb, "file"
    if not Path(path).is_file():
        return file_mb, "file (model.ort not made: model file not found)"
    try:
        return ort_size_mb(Path(path), style, work), "model.ort"
    except DeployError as e:
        return file_mb, f"file (model.ort not made: {e})"


#: a ``model.ort`` over this many times its packed source holds pack's weights unpacked (bundle's note, fit's hint)
ORT_UNPACKED_RATIO = 1.2

def _fp16_casts_note(model: Path, ort_path: Path, sig: dict[str, Any]) -> str | None:
    """Why an fp16 model's ``model.ort`` computes in fp32, or None: the converter builds a session on this host, and
    where this host's CPU provider has no fp16 kernel ONNX Runtime inserts fp16 -> fp32 casts (more with ``runtime``,
    whose nodes are left unfused, than with ``fixed``). The .ort keeps them on every device: ONNX
    Runtime inserts casts when it builds a session from an .onnx, never when it loads a .ort, so the kernels of the
    machine that converted it are baked in. Measured (verify-arm64, tests/arm64/test_arm64_ort.py), the tiny fp16
    BERT: neoverse-n1 runs its .onnx with 10 of the x86 host's 28 casts, the bundle's .ort with all 58. No
    conversion keeps the file loadable here without them: a .ort made at any optimization level or style carries
    this host's casts (ORT_DISABLE_ALL 63, basic/``runtime`` 58, all/``fixed`` 28), and one converted under QEMU
    on neoverse-n1 (10 casts) fails to load on x86 and on cortex-a72 ('Could not find an implementation for
    Add(14)'). The casts are counted in the file shipped."""
    from deploytool.variant import model_precision

    try:
        if model_precision(model)[0] != "fp16":
            return None
        from deploytool.arm64.ort_file import ort_skeleton
        from deploytool.runtime.session import CAST_PREFIX

        n = sum(node.name.startswith(CAST_PREFIX) for node in ort_skeleton(ort_path, sig).graph.node)
    except DeployError:
        return None
    if not n:
        return None
    return (f"ONNX Runtime's converter put {n} fp16 -> fp32 casts into model.ort where this host's CPU has no fp16 "
            "kernel, and the device runs those nodes in fp32 too: a .ort keeps the casts of the machine that "
            "converted it (none are added or dropped when it is loaded; one converted on an Arm core with fp16 "
            "arithmetic loads neither here nor on cores without it, such as cortex-a72); bundle the fp32 model, or "
            "ship the .onnx where fp16 arithmetic matters")


def _unpacked_note(model: Path, source_bytes: int, ort_bytes: int) -> str | None:
    """Why ``model.ort`` is bigger than a packed source, or None: ONNX Runtime's converter constant-folds the
    subgraphs that unpack ``pack``'s 2-bit / 5-trit / 1-bit weights (as every session does at load), so the
    .ort stores them as int8. MatMulNBits (``pack --runtime memory``) is a kernel, not a subgraph: its weights
    stay 2 bits in the .ort. Gathered embedding rows are unpacked at run time and stay packed too. What a fused
    node reads whole (ORT's fused EmbedLayerNormalization's tables, an Attention QKV in two binary planes) is
    unpacked to fp32 there, whatever the runtime: the record's note says so for those entries."""
    import onnx

    from deploytool.inspection import packing_record
    from deploytool.passes.pack_config import packing_record_key
    
    if ort_bytes <= ORT_UNPACKED_RATIO * source_bytes:
        return None
    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception:  # noqa: BLE001 - the converter read the file; a note is not worth an error
        return None
    record = packing_record({p.key: p.value for p in proto.metadata_props})
    # the storage of each entry's packed initializers (pack names them <weight>_<form>): INT2, or uint16 pairs of
    # bytes, are unpacked by constant subgraphs; MatMulNBits' uint8 blocks are read by the kernel
    folding = (onnx.TensorProto.INT2, onnx.TensorProto.UINT16)
    stored: dict[str, set[int]] = {}
    for t in proto.graph.initializer:
        key = packing_record_key(record, t.name)
        if key is not None:
            stored.setdefault(key, set()).add(t.data_type)
    fp32 = sorted(k for k, v in record.items() if "unpacked to fp32" in str(v.get("note", "")))
    folded = sorted({str(v.get("scheme")) for k, v in record.items() if k not in fp32 and v.get("role") != "embedding"
                     and stored.get(k, set()) & set(folding)})
    sizes = f"{fmt_bytes(ort_bytes)} against the packed file's {fmt_bytes(source_bytes)}"
    notes = []
    if folded:
        notes.append(f"model.ort holds pack's {', '.join(folded)} weights unpacked to int8 ({sizes}): ONNX Runtime's "
                     f"converter folds their unpacking, as a session does at load; for a small file on the device, "
                     f"`deploytool repack {model.name} --runtime memory` (the same codes, no fp32 model needed; "
                     f"MatMulNBits keeps 2 bits per weight in the .ort)")
    if fp32:
        shown = ", ".join(fp32[:3]) + (f" and {len(fp32) - 3} more" if len(fp32) > 3 else "")
        notes.append(f"model.ort holds {shown} unpacked to fp32{'' if folded else f' ({sizes})'}: a fused node of "
                     f"ONNX Runtime's optimizer reads {'it' if len(fp32) == 1 else 'them'} whole, in every runtime; "
                     f"pack the model as exported, before ORT's transformer optimizer, to keep {'it' if len(fp32) == 1 else 'them'} "
                     "packed")
    return "; ".join(notes) or None


def _array(a: np.ndarray) -> dict[str, Any]:
    return {"dtype": str(a.dtype), "shape": list(a.shape), "values": a.reshape(-1).tolist()}


def make_bundle(model_path: str | os.PathLike, out_dir: str | os.PathLike, cfg: BundleConfig) -> BundleResult:
    """Write the bundle for ``cfg.profile`` into ``out_dir`` (new or empty); see the module doc."""
    from deploytool.runtime.inputs import make_feeds, plan_inputs_proto
    from deploytool.onnx_io import external_data_files, load_proto
    import onnx_ir as ir

    from deploytool.inspection import check_position_table
    from deploytool.runtime.mobile import convert_to_ort, run_ort, signature
    from deploytool.runtime.host_facts import host_info

    from deploytool.choices import require_config

    require_config(cfg, BundleConfig, "make_bundle")  # a DeployError (one line, exit 2), as every entry point's
    model, out = Path(model_path), Path(out_dir)
    if not model.is_file():
        raise not_a_file(model, "ONNX model file")
    from deploytool.onnx_io import check_external_data

    check_external_data(model)
    shown = Path(out)  # named as given
    out = output_folder_target(out)  # -o a link (to an empty or new folder): the bundle goes where it points
    proto = load_proto(model, load_external_data=False)  # not ONNX -> one line
    plan = plan_inputs_proto(proto, model)  # no input ids -> one line
    plan.check(1, (cfg.seq_len,), str(model))
    # as qnn's static_shapes, before ORT runs it (its own log line)
    graph = ir.serde.deserialize_model(proto)
    check_position_table(graph, cfg.seq_len, str(model))
    look = _find_tokenizer(model, cfg, graph)  # the one the bundle ships and the QNN compile calibrates with
    qnn_skip = _qnn_preflight(model, cfg, graph, look)
    if cfg.repack_memory:
        from deploytool.variant import PACKING_KEY

        if PACKING_KEY not in graph.metadata_props:  # said before anything is written, in bundle's words (repack
            # would say it of its own options once the bundle's staging folder exists)
            raise ConfigError(f"--repack-memory: {model} has no '{PACKING_KEY}' record, so no packed weights to move "
                              "(it takes a file `deploytool pack` wrote); leave --repack-memory out for this model")
    _check_tokenizer_fits(look, plan)
    stage = make_staging_dir(out)
    source, repacked, scratch = model, None, None
    try:
        if cfg.repack_memory:  # the .ort is made from the repacked file (written outside the bundle)
            from deploytool import scratch as scratch_dirs
            from deploytool.passes.repack import RepackConfig, repack_file

            scratch = Path(scratch_dirs.mkdtemp("deploytool-bundle-"))
            model = scratch / "repacked.onnx"
            r = repack_file(source, model, RepackConfig(runtime="memory"))
            repacked = {"runtime": "memory", "weights_converted": r.stats.get("weights_converted", 0),
                        "bytes": r.bytes_after, "note": "the .ort is made from this repack of the source "
                        "(deploytool repack --runtime memory: the same codes and scales, MatMulNBits 2-bit)"}
        data = external_data_files(model)
        feeds = make_feeds(plan, 1, cfg.seq_len, cfg.seed)
        # the source first: a model that cannot run the fixed input (a sequence past what it supports) is
        # named, not the staged .ort made from it
        y_onnx = run_ort(model, feeds)
        ort_path, ops_path = convert_to_ort(model, data, stage, style=cfg.style)
        session = _session(cfg)
        y_ort = run_ort(ort_path, feeds, config_entries=session["config_entries"])
        diff = max(float(np.max(np.abs(y_ort[k].astype(np.float64) - y_onnx[k].astype(np.float64))))
                   if y_ort[k].size else 0.0 for k in y_ort)
        tok = _tokenizer(look, stage)
        qnn = _qnn(source, cfg, stage, qnn_skip, look.path)
        host = host_info()
        files = [{"name": str(p.relative_to(stage)), "bytes": p.stat().st_size}
                 for p in sorted(stage.rglob("*")) if p.is_file()]
        model_bytes = model.stat().st_size + sum(d.stat().st_size for d in data)
        source_bytes = model_bytes if source is model else \
            source.stat().st_size + sum(d.stat().st_size for d in external_data_files(source))
        sig = signature(ort_path)
        unpacked = "; ".join(n for n in (_unpacked_note(model, model_bytes, ort_path.stat().st_size),
                                         _fp16_casts_note(model, ort_path, sig)) if n)
        manifest = {
            "kind": KIND, "version": 1,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source": {"model": str(source), "bytes": source_bytes,
                       **({"repacked": repacked} if repacked is not None else {})},
            "profile": {"name": cfg.profile.name, "soc": cfg.profile.soc, "arch": cfg.profile.arch.value},
            "ort": {"model": ort_path.name, "required_operators": ops_path.name, "optimization_style": cfg.style,
                    "target_platform": "arm", "onnxruntime": host.get("onnxruntime"),
                    **({"note": unpacked} if unpacked else {})},
            "session": session,
            "signature": sig,
            "tokenizer": tok,
            "qnn": qnn,
            "fixed_input": {"seq_len": cfg.seq_len, "seed": cfg.seed, "batch": 1,
                            "inputs": {k: _array(v) for k, v in feeds.items()}},
            "expected_outputs": {k: _array(v) for k, v in y_ort.items()},
            "verification": {"seq_len": cfg.seq_len, "computed_from": ort_path.name,
                             "max_abs_vs_onnx": diff, "host": {k: host.get(k) for k in ("cpu_model", "arch")},
                             "note": "outputs computed on this host by ONNX Runtime (CPU EP) from the .ort file; "
                                     "a device's EP may differ within its precision"},
            "files": files,
        }
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        manifest["files"].append({"name": MANIFEST, "bytes": (stage / MANIFEST).stat().st_size})
        publish_staging_dir(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        if scratch is not None:
            from deploytool import scratch as scratch_dirs

            scratch_dirs.remove(scratch)
    return BundleResult(shown, manifest)
