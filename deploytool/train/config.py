"""Typed, validated configs for the training commands (one per verb), no torch here."""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from pathlib import Path

from deploytool.choices import OWN_CHECK, config, items, parse_enum
from deploytool.errors import ConfigError
from deploytool.units import MAX_SEQ_LEN
from deploytool.validation import check_column_name, check_pair_column, label_column_problem

__all__ = ["DataConfig", "TrainConfig", "ImportanceConfig", "DynaBertConfig", "QATConfig", "QuantMode",
           "EvalConfig", "parse_float_list"]


def _check(cond: bool, msg: str, mentions: tuple[str, ...] = ()) -> None:
    """ConfigError(msg) unless ``cond``; ``mentions``: the other fields the sentence names (a command line names
    its options there: ``--tws``, ``--mode binary``)."""
    if not cond:
        raise ConfigError(msg, mentions=mentions)


def is_default(cfg, name: str) -> bool:
    """Whether the dataclass ``cfg``'s field ``name`` holds its declared default (an option only some modes use,
    given where it does nothing, is refused by comparing with it)."""
    return getattr(cfg, name) == next(f.default for f in dataclasses.fields(cfg) if f.name == name)


def _check_threads(threads: int) -> None:
    _check(1 <= threads <= 256, f"threads: must be in [1, 256] (got {threads})")


def parse_float_list(text: str, field_name: str) -> tuple[float, ...]:
    """'0.25,0.5,1.0' -> (0.25, 0.5, 1.0); each value must be in (0, 1]."""
    parts = items(str(text), field_name)  # an empty item (0.5,,1) is refused, as the CLI's other lists refuse one
    try:
        vals = tuple(float(x) for x in parts)
    except ValueError:
        raise ConfigError(f"{field_name}: expected comma-separated numbers in (0, 1], got {text!r}") from None
    return _check_fractions(vals, field_name)


def _check_fractions(vals, field_name: str) -> tuple[float, ...]:
    if isinstance(vals, str):  # '0.25,0.5', as the CLI spells it (its characters are no list of numbers)
        return parse_float_list(vals, field_name)
    for v in vals:
        _check(not isinstance(v, bool) and isinstance(v, (int, float)),
               f"{field_name}: expected numbers in (0, 1], got {type(v).__name__} {v!r}")
    vals = tuple(float(v) for v in vals)
    _check(len(vals) > 0, f"{field_name}: needs at least one value in (0, 1]")
    for v in vals:
        _check(math.isfinite(v) and 0 < v <= 1, f"{field_name}: value {v:g} is outside (0, 1]")
    return tuple(sorted(set(vals)))


@config
@dataclass(frozen=True)
class DataConfig:
    """Which dataset and how it is split, tokenized and subsampled."""

    data: str | None = "rotten-tomatoes"  # None (eval only): the dataset recorded with the model at training
    # (the columns are checked by validation.check_column_name alone, in the words of every column option)
    text_col: str = field(default="text", metadata=OWN_CHECK)
    label_col: str = field(default="label", metadata=OWN_CHECK)
    # the second text of a sentence pair (GLUE's sentence2, hypothesis, ...); None: one text an example, or a pair
    # of columns the file is found to have (deploytool.data.text_columns)
    text_pair_col: str | None = field(default=None, metadata=OWN_CHECK)
    seed: int = 0
    max_length: int = 64
    max_train: int | None = None  # first N shuffled training examples (None = all)
    max_eval: int | None = None

    def __post_init__(self):
        _check(self.data is None or bool(str(self.data)), "data: a dataset name or file is required")
        check_column_name(self.text_col, "text_col")
        check_column_name(self.label_col, "label_col")
        if self.text_pair_col is not None:
            check_column_name(self.text_pair_col, "text_pair_col")
        # each text its own label: a head of as many classes as rows was trained, and eval listed every text
        problem = label_column_problem(self.text_col, self.label_col)
        _check(problem is None, f"text_col/label_col: {problem}")
        check_pair_column(self.text_pair_col, self.text_col, "text_pair_col", label_col=self.label_col)
        _check(2 <= self.max_length <= MAX_SEQ_LEN, f"max_length: must be in [2, {MAX_SEQ_LEN}] (got {self.max_length})")
        for name in ("max_train", "max_eval"):
            v = getattr(self, name)
            _check(v is None or v >= 1, f"{name}: must be >= 1 (got {v})")
        # numpy's and torch's generators take seeds in [0, 2**32 - 1]: outside it they failed as internal errors
        _check(isinstance(self.seed, int) and not isinstance(self.seed, bool) and 0 <= self.seed <= 2**32 - 1,
               f"seed: must be an integer in [0, {2**32 - 1}] (got {self.seed})")


@dataclass(frozen=True)
class _Optim:
    epochs: float = 1.0
    lr: float = 5e-5
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup_frac: float = 0.1
    threads: int = 2
    cpu: bool = False  # force CPU even when accelerate finds a GPU

    def _check_optim(self):
        _check(0 < self.epochs <= 1000, f"epochs: must be in (0, 1000] (got {self.epochs})")
        _check(0 < self.lr < 1, f"lr: must be in (0, 1) (got {self.lr})")
        _check(1 <= self.batch_size <= 4096, f"batch_size: must be in [1, 4096] (got {self.batch_size})")
        _check(0 <= self.warmup_frac < 1, f"warmup_frac: must be in [0, 1) (got {self.warmup_frac})")
        _check(0 <= self.weight_decay <= 1, f"weight_decay: must be in [0, 1] (got {self.weight_decay})")
        _check_threads(self.threads)


@config
@dataclass(frozen=True)
class TrainConfig(_Optim):
    """Fine-tune ``model`` (a name such as ``minilm`` or a HF folder) as a classifier on ``data``."""

    model: str = "minilm"
    output: Path = Path("teacher")
    data: DataConfig = field(default_factory=DataConfig)
    dev_each_epoch: bool = False  # dev accuracy after every epoch (shows where training plateaus)

    def __post_init__(self):
        self._check_optim()
        _check(bool(str(self.output)), "output: an output folder is required")


@config
@dataclass(frozen=True)
class ImportanceConfig:
    model: Path
    output: Path  # importance JSON
    reorder_output: Path | None = None  # reordered HF folder (optional)
    data: DataConfig = field(default_factory=DataConfig)
    max_examples: int = 512
    batch_size: int = 32
    threads: int = 2

    def __post_init__(self):
        _check(self.max_examples >= 1, f"max_examples: must be >= 1 (got {self.max_examples})")
        # max_train caps the training examples scored, with max_examples; nothing is evaluated
        _check(getattr(self.data, "max_eval", None) is None,
               "max_eval: not used by importance (it scores training examples: --max-examples, --max-train)")
        _check(self.batch_size >= 1, f"batch_size: must be >= 1 (got {self.batch_size})")
        _check_threads(self.threads)


@config
@dataclass(frozen=True)
class DynaBertConfig(_Optim):
    """Width-adaptive (stage 1) then width-and-depth-adaptive (stage 2) distillation."""

    teacher: Path = Path("teacher")
    output: Path = Path("dynabert")
    data: DataConfig = field(default_factory=DataConfig)
    widths: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    depths: tuple[float, ...] = (0.5, 0.75, 1.0)
    width_epochs: float = 1.0
    depth_epochs: float = 1.0
    subnets_per_step: int = 0  # 0 = every (width, depth) each step (DynaBERT); k = sandwich sample of k
    importance: Path | None = None  # precomputed importance of the teacher; None = compute it first
    importance_examples: int = 512
    temperature: float = 1.0
    w_logits: float = 1.0
    w_hidden: float = 1.0
    # DynaBERT's code distils logits and hidden states only; an attention-score term (TinyBERT) drowned
    # the logits in short schedules (MSE 2.3-2.7 vs 0.4-0.6; see benchmarks/train_bench.py)
    w_attention: float = 0.0
    lr: float = 2e-5

    def __post_init__(self):
        self._check_optim()
        object.__setattr__(self, "widths", _check_fractions(self.widths, "widths"))
        object.__setattr__(self, "depths", _check_fractions(self.depths, "depths"))
        _check(0 <= self.width_epochs <= 1000, f"width_epochs: must be in [0, 1000] (got {self.width_epochs})")
        _check(0 <= self.depth_epochs <= 1000, f"depth_epochs: must be in [0, 1000] (got {self.depth_epochs})")
        _check(self.width_epochs + self.depth_epochs > 0, "width_epochs/depth_epochs: at least one must be > 0")
        _check(self.subnets_per_step >= 0, f"subnets_per_step: must be >= 0 (got {self.subnets_per_step})")
        # k is the largest, the smallest and k-2 random sub-networks: 1 trained two a step, as 2 does, without a word
        _check(self.subnets_per_step != 1, "subnets_per_step: 1 is not a sample (each step trains the largest and the "
               "smallest sub-network at least); give 0 (every sub-network) or 2 or more")
        _check(self.importance_examples >= 1, f"importance_examples: must be >= 1 (got {self.importance_examples})")
        _check(self.temperature > 0, f"temperature: must be > 0 (got {self.temperature})")
        for n in ("w_logits", "w_hidden", "w_attention"):
            _check(getattr(self, n) >= 0, f"{n}: must be >= 0 (got {getattr(self, n)})")


class QuantMode(str, enum.Enum):
    TERNARY = "ternary"
    BINARY = "binary"


@config
@dataclass(frozen=True)
class QATConfig(_Optim):
    """TernaryBERT/BinaryBERT: weight quantization-aware distillation from the full-precision teacher."""

    teacher: Path = Path("teacher")
    output: Path = Path("qat")
    data: DataConfig = field(default_factory=DataConfig)
    mode: QuantMode = QuantMode.TERNARY
    granularity: str = "layer"  # one alpha per matrix ("layer") or per output feature ("row"), as `pack`
    quantize_embeddings: bool = True  # word embeddings, row-wise, same scheme (what `pack` does by default)
    clip: float = 3.0  # STE passes gradients only where |w| <= clip * alpha (0: everywhere)
    act_bits: int = 8  # 8: Linear inputs fake-quantized as the packed "speed" runtime does (2-2-8); 0: fp32
    temperature: float = 1.0
    w_logits: float = 1.0
    w_hidden: float = 1.0
    w_attention: float = 1.0
    lr: float = 5e-5
    # BinaryBERT's ternary weight splitting (mode binary only): the student starts as the width
    # ``tws_width`` sub-network of ``init`` (default: the teacher; a DynaBERT folder is importance-ordered),
    # trains ternary for ``tws_ternary_share`` of the epochs, is split into two binary planes per weight
    # (an equivalent binary model) and trains binary for the rest. Pack it with ``--weights split-binary``.
    tws: bool = False
    tws_width: float = 0.5
    tws_ternary_share: float = 0.5
    init: Path | None = None

    def __post_init__(self):
        self._check_optim()
        object.__setattr__(self, "mode", parse_enum(QuantMode, self.mode, "mode"))
        _check(not self.tws or self.mode is QuantMode.BINARY,
               "tws: ternary weight splitting makes a binary model: use it with mode binary", ("mode",))
        _check(0 < self.tws_width <= 1, f"tws_width: must be in (0, 1] (got {self.tws_width})")
        _check(0 < self.tws_ternary_share < 1, f"tws_ternary_share: must be in (0, 1) (got {self.tws_ternary_share})")
        _check(self.init is None or self.tws, "init: a separate starting model is only used with tws", ("tws",))
        # given without tws they were ignored in silence (a plain ternary run recorded as if cut to that width)
        for name in ("tws_width", "tws_ternary_share"):
            _check(self.tws or is_default(self, name),
                   f"{name}: only used with tws (ternary weight splitting, mode binary); got {getattr(self, name):g}",
                   ("tws", "mode"))
        _check(self.granularity in ("layer", "row"), f"granularity: must be layer or row (got {self.granularity!r})")
        _check(self.clip >= 0, f"clip: must be >= 0 (got {self.clip})")
        _check(self.act_bits in (0, 8), f"act_bits: must be 8 (int8 activations) or 0 (fp32) (got {self.act_bits})")
        _check(self.temperature > 0, f"temperature: must be > 0 (got {self.temperature})")
        for n in ("w_logits", "w_hidden", "w_attention"):
            _check(getattr(self, n) >= 0, f"{n}: must be >= 0 (got {getattr(self, n)})")


@config
@dataclass(frozen=True)
class EvalConfig:
    """Accuracy (and F1) of a HF folder or an .onnx model on one split, or of a whole file.

    ``data.data`` None: the dataset recorded with the model at training time (rotten-tomatoes where
    none is recorded). ``test_file``: evaluate every example of that file (no split). An embedding
    (feature-extraction) model is compared with ``reference`` over ``corpus`` instead.
    """

    model: Path
    data: DataConfig = field(default_factory=lambda: DataConfig(data=None))
    split: str = "test"
    test_file: Path | None = None
    reference: Path | None = None  # embedding models: the reference model (default: the fp32 original)
    corpus: str | None = None  # embedding models: a text file / dataset (default: the review data)
    max_queries: int = 1000  # embedding models: corpus texts used (first N)
    tokenizer: Path | None = None  # for an .onnx model; default: beside it, else the folder its export recorded
    width: float = 1.0  # PyTorch sub-network (DynaBERT) to evaluate
    depth: float = 1.0
    batch_size: int = 64
    threads: int = 2
    output: Path | None = None  # JSON

    def __post_init__(self):
        _check(self.split in ("train", "dev", "test", "all"),
               f"split: must be train, dev, test or all (got {self.split!r})")
        _check(self.test_file is None or self.data.data is None,
               "test_file: give --data (a dataset and a split) or --test-file (a whole file), not both")
        _check(self.max_queries >= 20, f"max_queries: must be >= 20 (got {self.max_queries})")
        _check_fractions([self.width], "width")
        _check_fractions([self.depth], "depth")
        _check(self.batch_size >= 1, f"batch_size: must be >= 1 (got {self.batch_size})")
        _check_threads(self.threads)
