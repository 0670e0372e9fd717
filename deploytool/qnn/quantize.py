"""QDQ quantization the way QNN's HTP wants it, calibrated on real text.

Steps (each on a copy; the input file is never modified):

1. static shapes: batch 1 and ``seq_len`` tokens (the HTP compiles fixed shapes; a model that already
   has a fixed sequence length keeps it);
2. the attention mask's -3.4e38 / -10000 constant bounded to ``mask_value``
   (:class:`deploytool.qnn.mask.BoundAttentionMaskPass`), unless ``mask=keep``;
3. ``onnxruntime.quantization`` ``qnn_preprocess_model`` (fuses the Erf-GELU and the decomposed
   LayerNorm into ops the HTP has) and ``get_qnn_qdq_config`` (uint16 activations / uint8 weights by
   default, uint8/uint8 as an option; opset raised to 21 for 16-bit types), calibrated with MinMax on
   ``calibration_size`` texts of a review dataset (``deploytool.data.calibration_texts``, train split)
   tokenised with the model's tokenizer, padded to ``seq_len``: real lengths, so real padding, so the
   calibrated range includes the bounded mask. Without a tokenizer, seeded random token ids with
   random lengths stand in, and the result says so; a dataset the user named (``calibration_fallback=False``)
   is refused instead, as is a name that is neither a built-in dataset nor a file.

An fp16 model is refused before ONNX Runtime sees it: its preprocessing fails on the fp16 graph with an internal
type error, and the quantization ranges would come from fp16 weights (quantize the fp32 model, or run this
one in the HTP's fp16 mode).

onnxruntime is imported inside the functions only (it is the runtime layer's dependency).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import os
import re
import time
from pathlib import Path

import numpy as np
import onnx

from deploytool import onnx_io, scratch, units
from deploytool.choices import OWN_CHECK, config, parse_enum
from deploytool.errors import ConfigError, PassRefusedError
from deploytool.qnn.ep import short_reason
from deploytool.qnn.target import QuantDtype
from deploytool.validation import check_calibration_columns

logger = logging.getLogger(__name__)

__all__ = ["MaskHandling", "QnnQuantConfig", "QnnQuantResult", "calibration_inputs", "check_calibration_data",
           "fp16_weights", "is_quantized", "quantize_for_qnn", "static_shapes"]

#: the sequence length the HTP model is made for when none is given and the model's inputs do not fix one
DEFAULT_SEQ_LEN = units.QNN_SEQ_LEN
_QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearMatMul", "QLinearConv", "MatMulInteger",
            "DynamicQuantizeLinear", "MatMulNBits", "DynamicQuantizeMatMul"}


class MaskHandling(str, enum.Enum):
    BOUND = "bound"  # rewrite the mask constant to mask_value (default)
    KEEP = "keep"  # quantize the exported mask as it is (to measure what it costs)


@config
@dataclasses.dataclass(frozen=True)
class QnnQuantConfig:
    """How to quantize a float encoder for the HTP."""

    activation_dtype: QuantDtype = QuantDtype.UINT16
    weight_dtype: QuantDtype = QuantDtype.UINT8
    seq_len: int | None = None  # None: DEFAULT_SEQ_LEN, or the length the model's inputs are fixed at
    mask: MaskHandling = MaskHandling.BOUND
    mask_value: float = -30.0
    calibration_data: str | None = "rotten-tomatoes"  # a deploytool.data dataset name or file
    calibration_size: int = 64
    # the columns of a calibration file the texts are read from (--calib-text-col, --calib-text-pair-col: a
    # sentence pair's second text; None: one text a row, or a file's GLUE pair of columns found as the CLI finds it)
    # (checked by validation.check_calibration_columns alone, in the words bundle and quantize --static use)
    calibration_text_col: str = dataclasses.field(default="text", metadata=OWN_CHECK)
    calibration_text_pair_col: str | None = dataclasses.field(default=None, metadata=OWN_CHECK)
    # no tokenizer known for calibration_data's texts: True = seeded token ids stand in (the stats say so), for a
    # default dataset; False = refuse, for one the user named (calibrating on something else would be a lie)
    calibration_fallback: bool = True
    # a tokenizer.json or vocab.txt, or a folder holding one; None: deploytool.models.find_tokenizer's rule (beside the
    # model's file, else in the model folder the export recorded)
    tokenizer: str | None = None
    per_channel: bool = False
    # the word-embedding table: None = the activation type (QNN's Gather keeps one type from table to
    # output, so with uint16 activations the table is stored in 16 bits); uint8 halves its bytes and
    # QNN converts the gathered rows to the activation type
    embedding_dtype: QuantDtype | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "activation_dtype", parse_enum(QuantDtype, self.activation_dtype, "activation_dtype",
                                                                allowed=(QuantDtype.UINT8, QuantDtype.UINT16)))
        object.__setattr__(self, "weight_dtype", parse_enum(QuantDtype, self.weight_dtype, "weight_dtype",
                                                            allowed=(QuantDtype.UINT8, QuantDtype.INT8)))
        if self.embedding_dtype is not None:
            object.__setattr__(self, "embedding_dtype", parse_enum(QuantDtype, self.embedding_dtype, "embedding_dtype",
                                                                   allowed=(QuantDtype.UINT8, QuantDtype.UINT16)))
        check_seq_len(self.seq_len)
        object.__setattr__(self, "mask", parse_enum(MaskHandling, self.mask, "mask"))
        if not -1e4 <= self.mask_value <= -5:
            raise ConfigError(f"mask_value: must be in [-10000, -5], got {self.mask_value}")
        if isinstance(self.calibration_size, bool) or not isinstance(self.calibration_size, int) \
                or not 1 <= self.calibration_size <= 10000:
            raise ConfigError(f"calibration_size: must be an integer in [1, 10000], got {self.calibration_size!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed: must be an integer in [0, {2**32 - 1}], got {self.seed!r}")
        check_calibration_data(self.calibration_data, "calibration_data")
        check_calibration_columns(self.calibration_text_col, self.calibration_text_pair_col,
                                  names=("calibration_text_col", "calibration_text_pair_col"),
                                  data=self.calibration_data, data_name="calibration_data")

    @property
    def dtypes(self) -> str:
        emb = "" if self.embedding_dtype in (None, self.activation_dtype) else f" emb {self.embedding_dtype.short}"
        return f"{self.activation_dtype.short}/{self.weight_dtype.short}{emb}"


@dataclasses.dataclass
class QnnQuantResult:
    model: onnx.ModelProto  # the QDQ model, static shapes
    reference: onnx.ModelProto  # the float input with the same static shapes (mask untouched)
    stats: dict


def check_calibration_data(value: str | os.PathLike | None, field: str) -> None:
    """Refuse (ConfigError naming ``field``) a calibration source that is neither a built-in dataset's name nor
    an existing file: a misspelled name would otherwise surface only when its texts are read, or never where no
    tokenizer is known and seeded ids stand in."""
    from deploytool.choices import did_you_mean
    from deploytool.data import dataset_names

    if value is None:
        return
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{field}: expected a dataset name or a file path, got {type(value).__name__}")
    names = dataset_names()
    if str(value) in names or Path(value).is_file():
        return
    raise ConfigError(f"{field}: unknown dataset '{value}': neither a built-in dataset ({', '.join(names)}) nor a "
                      f"file{did_you_mean(str(value), names)}")


def fp16_weights(model: onnx.ModelProto) -> int:
    """How many initializers are stored in fp16 (``deploytool quantize --fp16`` stores every float weight so)."""
    return sum(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)


def is_quantized(model: onnx.ModelProto) -> bool:
    """True when the graph already carries quantization (QDQ pairs or integer ops)."""
    return any(n.op_type in _QDQ_OPS for n in model.graph.node)


def check_seq_len(seq_len: int | None) -> None:
    """The QNN configs' ``seq_len`` check: None (the default: :data:`DEFAULT_SEQ_LEN`, or the model's fixed length),
    or an integer in [1, MAX_SEQ_LEN]."""
    from deploytool.units import MAX_SEQ_LEN

    if seq_len is not None and (isinstance(seq_len, bool) or not isinstance(seq_len, int)
                                or not 1 <= seq_len <= MAX_SEQ_LEN):
        raise ConfigError(f"seq_len: must be an integer in [1, {MAX_SEQ_LEN}], got {seq_len!r}")


def default_seq_len(model: onnx.ModelProto) -> int:
    """The length a QNN config's ``seq_len`` None stands for: the shortest one the model's [batch, sequence] inputs
    are fixed at (a QDQ model quantized at a length), else :data:`DEFAULT_SEQ_LEN`."""
    fixed = _fixed_seq_lens(model)
    return min(fixed) if fixed else DEFAULT_SEQ_LEN


def _fixed_seq_lens(model: onnx.ModelProto) -> set[int]:
    """The sequence lengths the model's [batch, sequence] inputs are fixed at (empty: all dynamic)."""
    out = set()
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim if inp.type.HasField("tensor_type") else ()
        if len(dims) == 2 and not dims[1].dim_param and dims[1].dim_value > 0:
            out.add(int(dims[1].dim_value))
    return out


def static_shapes(model: onnx.ModelProto, seq_len: int | None) -> tuple[onnx.ModelProto, int]:
    """A copy with batch 1 and ``seq_len`` tokens on every [batch, sequence] input.

    Returns (model, the sequence length used). ``seq_len`` None: a model whose inputs are fixed at a length keeps it,
    others get :data:`DEFAULT_SEQ_LEN`. A ``seq_len`` given that differs from the fixed length is refused (it was
    silently replaced by the model's).
    """
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_dim_param_fixed

    fixed = _fixed_seq_lens(model)
    if seq_len is not None and fixed and fixed != {seq_len}:
        shown = ", ".join(map(str, sorted(fixed)))
        raise PassRefusedError(f"--seq-len {seq_len}: the model's inputs are fixed at sequence length {shown}; leave "
                               f"--seq-len out or give {shown} (or quantize the float model at {seq_len})")
    given = seq_len is not None
    if seq_len is None:
        seq_len = default_seq_len(model)
    check_table(model, seq_len, "--seq-len" if given else "the default --seq-len")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    used = seq_len
    for inp in m.graph.input:
        if not inp.type.HasField("tensor_type"):
            continue
        dims = inp.type.tensor_type.shape.dim
        if len(dims) != 2:
            raise PassRefusedError(f"input {inp.name}: expected [batch, sequence], got rank {len(dims)}; "
                                   "the QNN path handles token-id encoders")
        if dims[0].dim_param:
            make_dim_param_fixed(m.graph, dims[0].dim_param, 1)
        elif dims[0].dim_value != 1:
            raise PassRefusedError(f"input {inp.name}: batch is fixed to {dims[0].dim_value}; the QNN path "
                                   "compiles batch 1")
        if dims[1].dim_param:
            make_dim_param_fixed(m.graph, dims[1].dim_param, seq_len)
        else:
            used = dims[1].dim_value
    for vi in list(m.graph.value_info):
        m.graph.value_info.remove(vi)
    for out in m.graph.output:  # fix_output_shapes only replaces symbolic dims it can infer
        for d in out.type.tensor_type.shape.dim:
            if d.dim_param:
                d.Clear()
    m = onnx.shape_inference.infer_shapes(m)
    fix_output_shapes(m)
    return m, used


def check_table(model: onnx.ModelProto, seq_len: int, option: str = "--seq-len") -> None:
    """ConfigError when ``seq_len`` is past the model's position table: :func:`deploytool.inspection.check_position_table`,
    the one rule and wording (a RoBERTa-style table's usable length and rows both said)."""
    import onnx_ir as ir

    from deploytool.inspection import check_position_table

    check_position_table(ir.serde.deserialize_model(model), seq_len, None, option)


def _tokenize(tokenizer: Path, texts: list[str] | list[tuple[str, str]], seq: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids, attention mask and token types of ``texts`` padded to ``seq``; a (text, second text) tuple is a
    sentence pair, one input with types 0 then 1. ``tokenizer``: a tokenizer.json or vocab.txt, or a folder
    holding one (:func:`deploytool.models.load_tokenizer`)."""
    from deploytool.models import load_tokenizer

    tok = load_tokenizer(tokenizer)
    pad_id = tok.token_to_id("[PAD]")
    pad_id = 0 if pad_id is None else pad_id
    tok.enable_truncation(max_length=seq)
    tok.enable_padding(length=seq, pad_id=pad_id)
    enc = tok.encode_batch(texts)
    return (np.array([e.ids for e in enc], dtype=np.int64), np.array([e.attention_mask for e in enc], dtype=np.int64),
            np.array([e.type_ids for e in enc], dtype=np.int64))


def _word_embedding(model: onnx.ModelProto) -> onnx.TensorProto | None:
    """The initializer a Gather indexes with ``input_ids`` (the word-embedding table)."""
    ids = {i.name for i in model.graph.input if "input_ids" in i.name}
    inits = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Gather" and len(n.input) > 1 and n.input[1] in ids and n.input[0] in inits:
            return inits[n.input[0]]
    return None


def _vocab_size(model: onnx.ModelProto) -> int:
    emb = _word_embedding(model)
    return int(emb.dims[0]) if emb is not None else 100


def _feeds(model: onnx.ModelProto, ids: np.ndarray, mask: np.ndarray,
           types: np.ndarray | None = None) -> list[dict[str, np.ndarray]]:
    """One feed of batch 1 a row; token types ``types`` (a sentence pair's 0s and 1s), else zeros."""
    out = []
    elem = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    for r in range(ids.shape[0]):
        feed = {}
        for name, et in elem.items():
            low = name.lower()
            if "mask" in low:
                a = mask[r:r + 1]
            elif "type" in low or "segment" in low:
                a = types[r:r + 1] if types is not None else np.zeros_like(ids[r:r + 1])
            elif "ids" in low or "input" in low:
                a = ids[r:r + 1]
            else:
                raise PassRefusedError(f"input {name}: cannot make calibration data for it (expected input_ids, "
                                       "attention_mask, token_type_ids)")
            feed[name] = a.astype(onnx.helper.tensor_dtype_to_np_dtype(et))
        out.append(feed)
    return out


def calibration_inputs(model: onnx.ModelProto, *, seq_len: int, n: int, data: str | None,
                       tokenizer: Path | None, seed: int = 0, split: str = "train", text_col: str = "text",
                       text_pair_col: str | None = None) -> tuple[list[dict], str]:
    """``n`` feeds of batch 1 and ``seq_len`` tokens, and a note saying where they came from; a file's texts are
    read from its ``text_col`` (and ``text_pair_col``: sentence pairs) column."""
    if data is not None and tokenizer is not None:
        from deploytool.data import calibration_texts

        texts = calibration_texts(data, n=n, seed=seed, split=split, text_col=text_col, text_pair_col=text_pair_col)
        ids, mask, types = _tokenize(tokenizer, texts, seq_len)
        lengths = mask.sum(1)
        what = "sentence pairs" if texts and isinstance(texts[0], tuple) else "texts"
        note = (f"{len(texts)} {data} {split} {what} tokenised with {tokenizer}, padded to {seq_len} "
                f"(real lengths {int(lengths.min())}-{int(lengths.max())}, mean {lengths.mean():.1f})")
        return _feeds(model, ids, mask, types), note
    rng = np.random.default_rng(seed)
    vocab = _vocab_size(model)
    ids = rng.integers(3, vocab, size=(n, seq_len), dtype=np.int64)
    mask = np.zeros((n, seq_len), dtype=np.int64)
    for r in range(n):
        length = int(rng.integers(max(1, seq_len // 4), seq_len + 1)) if r % 4 else seq_len
        mask[r, :length] = 1
        ids[r, length:] = 0
    why = "no dataset given" if data is None else "no tokenizer known (pass --tokenizer)"
    note = (f"NOTE: {n} seeded random token-id rows (seed {seed}, lengths {seq_len // 4}-{seq_len}, padded), "
            f"not real text: {why}")
    return _feeds(model, ids, mask), note


class _QuietRootWarnings(logging.Filter):
    """onnxruntime.quantization warns on the root logger about things handled here (opset 21, preprocessing)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "root" or record.levelno > logging.WARNING


@contextlib.contextmanager
def _quiet_quantizer():
    f = _QuietRootWarnings()
    root = logging.getLogger()
    root.addFilter(f)
    for h in root.handlers:
        h.addFilter(f)
    try:
        yield
    finally:
        root.removeFilter(f)
        for h in root.handlers:
            h.removeFilter(f)


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over a list of feeds."""

    def __init__(self, feeds: list[dict]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)

    def __iter__(self):
        return self

    def __next__(self):
        x = self.get_next()
        if x is None:
            raise StopIteration
        return x


def quantize_for_qnn(model: onnx.ModelProto, cfg: QnnQuantConfig, *,
                     model_path: str | Path | None = None) -> QnnQuantResult:
    """QDQ-quantize a float encoder for the QNN HTP (see module doc). ``model`` is not modified."""
    import onnx_ir as ir
    from onnxruntime.quantization import quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config, qnn_preprocess_model

    from deploytool.qnn.mask import BoundAttentionMaskPass

    name = Path(model_path).name if model_path else "model"
    if is_quantized(model):
        raise PassRefusedError(f"{name}: the model is already quantized (has QuantizeLinear/DequantizeLinear or "
                               "integer ops); give the float model")
    half = fp16_weights(model)
    if half:  # ORT's preprocessing would fail on it with an internal type error naming its own temp file
        raise PassRefusedError(f"{name}: the model is fp16 ({half} fp16 weights): QNN's {cfg.dtypes} quantization "
                               "needs the fp32 model (quantize the file it was made from), or run this one in the "
                               "HTP's fp16 mode (qnn check|compile --fp16)")
    # the calibration source before any work: a dataset the user named is used, or refused
    from deploytool.models import TOKENIZER_HINT, export_source, find_tokenizer

    look = find_tokenizer(model_path, cfg.tokenizer, export_source(model))
    tok = look.path
    if cfg.calibration_data is not None and tok is None and not cfg.calibration_fallback:
        raise ConfigError(f"calibration_data: '{cfg.calibration_data}' is text and no tokenizer is known to turn "
                          f"it into token ids ({look.looked}): {TOKENIZER_HINT}, or 'none' for seeded token ids")
    t0 = time.perf_counter()
    reference, seq = static_shapes(model, cfg.seq_len)
    stats: dict = {"activation_dtype": cfg.activation_dtype.value, "weight_dtype": cfg.weight_dtype.value,
                   "seq_len": seq, "mask": cfg.mask.value}
    work = ir.serde.deserialize_model(reference)
    if cfg.mask is MaskHandling.BOUND:
        r = BoundAttentionMaskPass(cfg.mask_value)(work)
        stats["mask_bounded"] = r.stats["masks_bounded"]
        stats["mask_value"] = cfg.mask_value
        stats["mask_skipped"] = [s.reason for s in r.skipped]
    prepared = onnx_io.serialize_model(work)
    # qnn_preprocess_model (ORT 1.32) crashes on a model with metadata_props (dict.update on protobuf
    # entries): take them off and put them back on the QDQ model
    metadata = [(p.key, p.value) for p in prepared.metadata_props]
    del prepared.metadata_props[:]
    feeds, note = calibration_inputs(prepared, seq_len=seq, n=cfg.calibration_size, data=cfg.calibration_data,
                                     tokenizer=tok, seed=cfg.seed, text_col=cfg.calibration_text_col,
                                     text_pair_col=cfg.calibration_text_pair_col)
    # which tokenizer, where the one beside the model and the export's folder's differ (one line, in the note)
    stats["calibration"] = note + (f"; {look.note}" if look.note and cfg.calibration_data is not None and tok else "")
    with scratch.temporary_directory("deploytool-qnn-") as tmp, _quiet_quantizer():
        src, pre, out = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "qdq.onnx")
        onnx.save(prepared, str(src))
        try:
            fused = qnn_preprocess_model(str(src), str(pre), fuse_layernorm=True)
        except Exception as e:  # noqa: BLE001 - ORT's preprocessing refusing this graph: one line, not a traceback
            # ORT names the temporary copy it failed to load (gone by now): the reason is what follows
            first = short_reason(re.sub(r"Load model from \S+ failed:\s*", "", str(e)), 300)
            raise PassRefusedError(f"ONNX Runtime's QNN preprocessing failed on this model at seq {seq} ({first})") from e
        qin = pre if fused else src
        overrides = None
        emb = _word_embedding(prepared)
        if cfg.embedding_dtype not in (None, cfg.activation_dtype) and emb is not None:
            overrides = {emb.name: [{"quant_type": cfg.embedding_dtype.ort_type()}]}
            stats["embedding_dtype"] = cfg.embedding_dtype.value
        qcfg = get_qnn_qdq_config(str(qin), _Reader(feeds), activation_type=cfg.activation_dtype.ort_type(),
                                  weight_type=cfg.weight_dtype.ort_type(), per_channel=cfg.per_channel,
                                  init_overrides=overrides)
        quantize(str(qin), str(out), qcfg)
        qdq = onnx.load(str(out))
    present = {p.key for p in qdq.metadata_props}
    for k, v in metadata:
        if k not in present:
            qdq.metadata_props.add(key=k, value=v)
    stats["preprocess_fused"] = bool(fused)
    stats["nodes"] = len(qdq.graph.node)
    stats["quantize_s"] = round(time.perf_counter() - t0, 3)
    logger.info("quantized for QNN (%s): %s", cfg.dtypes, note)
    return QnnQuantResult(model=qdq, reference=reference, stats=stats)


def quantize_file(src: str | Path, dst: str | Path, cfg: QnnQuantConfig) -> dict:
    """Quantize the float model ``src`` for QNN and save the QDQ model to ``dst`` atomically."""
    from deploytool.choices import require_config

    require_config(cfg, QnnQuantConfig, "quantize_file")  # a path or a dict: ConfigError, not AttributeError
    from deploytool.onnx_io import check_output_path, load_proto, save_proto
    from deploytool.qnn.ep import require_qnn

    require_qnn()
    check_output_path(dst, inputs=(src,))
    result = quantize_for_qnn(load_proto(src), cfg, model_path=src)
    save_proto(result.model, dst)
    result.stats["bytes"] = Path(dst).stat().st_size
    return result.stats
