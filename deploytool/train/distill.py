"""TinyBERT task distillation (Jiao et al. 2020) into a smaller student of a different shape.

The student has its own shape (``layers``, ``hidden``, ``heads``, ``ffn``), e.g. TinyBERT-4
(4 x 312, 12 heads, FFN 1200) from MiniLM-L6 (6 x 384, 12 heads, FFN 1536).

Layer mapping (TinyBERT's uniform strategy): student layer ``m`` (1-based) learns from teacher layer
``g(m) = floor(m * L_t / L_s)``, ``g(0) = 0`` being the embeddings; the last layer maps to the last.
For 6 -> 4: g = 1, 3, 4, 6.

Loss per batch (``deploytool.train.losses``, with the teacher indexed through ``g``):

- logits: soft cross-entropy ``-sum softmax(t/T) log softmax(s/T) * T^2`` (``w_logits``);
- hidden states: ``MSE(W_h s_m, t_g(m))`` for the embeddings (m = 0) and every student layer, with one
  learnable ``W_h`` (student hidden -> teacher hidden, TinyBERT's ``fit_dense``; dropped after
  training), padded tokens excluded (``w_hidden``);
- attention: MSE between the pre-softmax scores of student layer m and teacher layer g(m), head by
  head, padded positions excluded (``w_attention``); only when the head counts are equal, otherwise
  skipped and said so in the result;
- optionally cross-entropy on the true labels (``w_labels``, 0 = TinyBERT).

``intermediate_epochs > 0`` first trains on the hidden and attention losses only (TinyBERT's
intermediate-layer step), then ``epochs`` on the full loss.

Initialisation ``teacher-slice``: the teacher's heads and FFN neurons are first reordered by
importance (``importance_examples`` > 0; DynaBERT's rewiring, outputs unchanged), then every student
matrix is the teacher's matrix (layer ``g(m) - 1``) truncated to the student's dims:
hidden dims ``[0, hidden)`` everywhere (embeddings, LayerNorms, residual-side rows/columns, pooler,
classifier); FFN neurons ``[0, ffn)``; attention: when ``heads <= teacher heads`` and
``hidden/heads <= teacher head size``, rows ``h * d_t + [0, d_s)`` of Q, K, V (and the same columns of
the output projection) for heads ``h < heads`` (each student head is a truncated teacher head);
otherwise the first ``hidden`` rows without head structure (said in the result). ``W_h`` starts as
the matching 0/1 embedding of the kept hidden dims. ``random`` starts from a fresh random student.
"""

from __future__ import annotations

import math

import copy
import enum
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploytool.choices import config, parse_enum
from deploytool.errors import ConfigError, DeployError
from deploytool.train.batching import keeps_torch_threads
from deploytool.train.config import DataConfig, _Optim, is_default

logger = logging.getLogger(__name__)

__all__ = ["DistillConfig", "DistillInit", "distill", "layer_map", "check_against_teacher", "make_student",
           "count_parameters"]


class DistillInit(str, enum.Enum):
    TEACHER_SLICE = "teacher-slice"
    RANDOM = "random"


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _int(v, name: str, lo: int, hi: int) -> int:
    _check(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi,
           f"{name}: must be an integer in [{lo}, {hi}] (got {v!r})")
    return v


@config
@dataclass(frozen=True)
class DistillConfig(_Optim):
    """Distil ``teacher`` (a fine-tuned classifier folder) into a student of shape layers x hidden."""

    teacher: Path = Path("teacher")
    output: Path = Path("student")
    data: DataConfig = field(default_factory=DataConfig)
    layers: int = 4
    hidden: int = 312
    heads: int = 12
    ffn: int = 1200
    init: DistillInit = DistillInit.TEACHER_SLICE
    importance_examples: int = 256  # teacher-slice: reorder heads/neurons by importance first (0 = don't)
    intermediate_epochs: float = 0.0  # TinyBERT step 1: hidden + attention losses only
    temperature: float = 1.0
    w_logits: float = 1.0
    w_hidden: float = 1.0
    w_attention: float = 1.0
    w_labels: float = 0.0
    lr: float = 1e-4

    def __post_init__(self):
        self._check_optim()
        _check(bool(str(self.teacher)), "teacher: a teacher model folder is required")
        _check(bool(str(self.output)), "output: an output folder is required")
        _check(isinstance(self.data, DataConfig), f"data: must be a DataConfig (got {type(self.data).__name__})")
        _int(self.layers, "layers", 1, 1000)
        _int(self.hidden, "hidden", 1, 65536)
        _int(self.heads, "heads", 1, 1024)
        _int(self.ffn, "ffn", 1, 262144)
        _check(self.hidden % self.heads == 0,
               f"hidden: {self.hidden} is not divisible by heads={self.heads} (head size must be an integer)")
        object.__setattr__(self, "init", parse_enum(DistillInit, self.init, "init"))
        _int(self.importance_examples, "importance_examples", 0, 10**7)
        # a random student has no teacher heads to reorder: the count was accepted and ignored in silence
        _check(self.init is DistillInit.TEACHER_SLICE or self.importance_examples == 0
               or is_default(self, "importance_examples"),
               f"importance_examples: only used with init teacher-slice (a random student reorders nothing); "
               f"got {self.importance_examples} with init {self.init.value}")
        _check(0 <= self.intermediate_epochs <= 1000,
               f"intermediate_epochs: must be in [0, 1000] (got {self.intermediate_epochs})")
        _check(math.isfinite(self.temperature) and self.temperature > 0,
               f"temperature: must be a finite number > 0 (got {self.temperature})")
        for n in ("w_logits", "w_hidden", "w_attention", "w_labels"):  # inf trained on an infinite loss
            _check(math.isfinite(getattr(self, n)) and getattr(self, n) >= 0,
                   f"{n}: must be a finite number >= 0 (got {getattr(self, n)})")
        _check(self.w_logits + self.w_hidden + self.w_attention + self.w_labels > 0,
               "w_logits/w_hidden/w_attention/w_labels: at least one loss weight must be > 0")


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """TinyBERT's uniform mapping: [g(1), ..., g(L_s)] with g(m) = floor(m * L_t / L_s) (1-based outputs)."""
    if not 1 <= student_layers <= teacher_layers:
        raise ConfigError(f"layers: the student's {student_layers} layers must be in [1, {teacher_layers}] "
                          f"(the teacher's layer count)")
    return [m * teacher_layers // student_layers for m in range(1, student_layers + 1)]


def count_parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _shape(cfg) -> dict:
    return {"layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size, "heads": cfg.num_attention_heads,
            "ffn": cfg.intermediate_size}


def _student_config(tcfg, cfg: DistillConfig):
    scfg = copy.deepcopy(tcfg)
    scfg.num_hidden_layers = cfg.layers
    scfg.hidden_size = cfg.hidden
    scfg.num_attention_heads = cfg.heads
    scfg.intermediate_size = cfg.ffn
    if getattr(tcfg, "embedding_size", None) == tcfg.hidden_size:  # ELECTRA without embeddings_project
        scfg.embedding_size = cfg.hidden
    return scfg


def _attention_rows(tcfg, cfg: DistillConfig):
    """Teacher rows of Q/K/V kept for the student, and whether they keep head structure."""
    import torch

    hd_t = tcfg.hidden_size // tcfg.num_attention_heads
    hd_s = cfg.hidden // cfg.heads
    if cfg.heads <= tcfg.num_attention_heads and hd_s <= hd_t:
        rows = (torch.arange(cfg.heads)[:, None] * hd_t + torch.arange(hd_s)[None, :]).reshape(-1)
        return rows, True
    return torch.arange(cfg.hidden), False


def _copy_sliced(dst, src, rows=None, cols=None) -> None:
    w = src.weight
    if rows is not None:
        w = w[rows]
    if cols is not None:
        w = w[:, cols]
    dst.weight.copy_(w)
    if getattr(dst, "bias", None) is not None:
        dst.bias.copy_(src.bias if rows is None else src.bias[rows])


def check_against_teacher(cfg: DistillConfig, tcfg) -> list[int]:
    """Refuse a student the teacher cannot teach (deeper; wider than it under teacher-slice); the layer map."""
    gmap = layer_map(cfg.layers, tcfg.num_hidden_layers)
    if cfg.init is DistillInit.TEACHER_SLICE:
        for name, s, t in (("hidden", cfg.hidden, tcfg.hidden_size), ("ffn", cfg.ffn, tcfg.intermediate_size)):
            if s > t:
                raise ConfigError(f"{name}: {s} is larger than the teacher's {t}; init teacher-slice can only "
                                  f"shrink (use init random)")
    return gmap


def make_student(teacher, cfg: DistillConfig, *, seed: int = 0):
    """A student of ``cfg``'s shape (same class and vocabulary as ``teacher``), initialised per ``cfg.init``.

    Returns (student, notes). The teacher is not modified.
    """
    import torch

    from deploytool.train.subnet import encoder_of

    tcfg = teacher.config
    gmap = check_against_teacher(cfg, tcfg)
    torch.manual_seed(seed)
    student = type(teacher)(_student_config(tcfg, cfg)).eval()
    notes = []
    if cfg.init is DistillInit.RANDOM:
        return student, notes
    H = torch.arange(cfg.hidden)
    Fn = torch.arange(cfg.ffn)
    A, per_head = _attention_rows(tcfg, cfg)
    if not per_head:
        notes.append(f"attention weights truncated to the first {cfg.hidden} rows without head structure "
                     f"(student {cfg.heads} heads x {cfg.hidden // cfg.heads}, teacher "
                     f"{tcfg.num_attention_heads} x {tcfg.hidden_size // tcfg.num_attention_heads})")
    with torch.no_grad():
        s_layers, t_layers = encoder_of(student).encoder.layer, encoder_of(teacher).encoder.layer
        for m, g in enumerate(gmap):
            sl, tl = s_layers[m], t_layers[g - 1]
            for n in ("query", "key", "value"):
                _copy_sliced(getattr(sl.attention.self, n), getattr(tl.attention.self, n), A, H)
            _copy_sliced(sl.attention.output.dense, tl.attention.output.dense, H, A)
            _copy_sliced(sl.attention.output.LayerNorm, tl.attention.output.LayerNorm, H)
            _copy_sliced(sl.intermediate.dense, tl.intermediate.dense, Fn, H)
            _copy_sliced(sl.output.dense, tl.output.dense, H, Fn)
            _copy_sliced(sl.output.LayerNorm, tl.output.LayerNorm, H)
        prefix = f"{student.base_model_prefix}.encoder.layer."
        done = {n for n, _ in student.named_parameters() if n.startswith(prefix)}
        # everything else (embeddings, pooler, classifier heads): a dim of the student's hidden size
        # that was the teacher's hidden size keeps [0, hidden); equal dims are copied whole
        tparams = dict(teacher.named_parameters())
        for name, p in student.named_parameters():
            if name in done:
                continue
            tp = tparams.get(name)
            if tp is None:
                raise DeployError(f"teacher-slice init: the teacher has no parameter {name}")
            idx = []
            for ds, dt in zip(p.shape, tp.shape):
                if ds == dt:
                    idx.append(slice(None))
                elif ds == cfg.hidden and dt == tcfg.hidden_size:
                    idx.append(slice(0, ds))
                else:
                    raise DeployError(f"teacher-slice init: cannot map {name} {list(tp.shape)} -> {list(p.shape)}")
            p.copy_(tp[tuple(idx)])
    return student, notes


def _remap_teacher(t, gmap, student_layers):
    """The teacher's SubnetOutput indexed as the student's layers (hidden[0] = embeddings)."""
    from deploytool.train.subnet import SubnetOutput

    return SubnetOutput(logits=t.logits, hidden=[t.hidden[0]] + [t.hidden[g] for g in gmap],
                        scores=[t.scores[g - 1] for g in gmap] if t.scores else [], layers=student_layers)


def _require_classifier(folder: Path) -> None:
    from deploytool.train.checkpoint import require_classifier

    require_classifier(folder, "teacher")


@keeps_torch_threads
def distill(cfg: DistillConfig) -> dict:
    """Distil, evaluate student and teacher on dev, save the student HF folder atomically; returns the record."""
    import torch
    import torch.nn.functional as F

    from deploytool.train.batching import check_max_length, check_vocab, encode, make_accelerator, torch_max_length
    from deploytool.train.teacher_data import load_teacher_data
    from deploytool.train.checkpoint import check_output_folder, data_file, load_classifier, load_tokenizer, read_meta, \
        resolve_folder, save_folder
    from deploytool.train.evaluate import evaluate_torch
    from deploytool.train.importance import head_neuron_importance, reorder_model
    from deploytool.train.losses import distill_loss
    from deploytool.train.loop import run_loop
    from deploytool.train.subnet import SUPPORTED, SubnetOutput, subnet_forward

    t0 = time.perf_counter()
    if not isinstance(cfg, DistillConfig):
        raise ConfigError(f"distill: expected a DistillConfig, got {type(cfg).__name__}")
    folder = resolve_folder(cfg.teacher)
    _require_classifier(folder)
    check_output_folder(cfg.output, inputs=(folder, data_file(cfg.data)))
    ds = load_teacher_data(cfg.data, folder)  # the teacher's ids; its recorded dataset by default
    acc = make_accelerator(cfg.threads, cfg.cpu, cfg.data.seed)
    tok = load_tokenizer(folder)
    teacher = load_classifier(folder, num_labels=ds.num_labels)
    mt = getattr(teacher.config, "model_type", "?")
    if mt not in SUPPORTED:
        raise DeployError(f"distill supports {', '.join(SUPPORTED)} teachers, not '{mt}'")
    tshape = _shape(teacher.config)
    gmap = check_against_teacher(cfg, teacher.config)  # before any work
    # the student copies the teacher's config (_student_config), position table included: one check covers both
    check_max_length(cfg.data.max_length, torch_max_length(teacher), f"the teacher {folder}")
    check_vocab(tok, teacher, f"the teacher {folder}")  # the student copies its table too
    pad = tok.pad_token_id or 0
    enc = encode(tok, ds.train, cfg.data.max_length, limit=cfg.data.max_train, what="train")
    teacher.eval().requires_grad_(False)
    teacher_dev = evaluate_torch(teacher, tok, ds, "dev", cfg.data, device=acc.device)

    notes = []
    importance = None
    if cfg.init is DistillInit.TEACHER_SLICE and cfg.importance_examples > 0:
        ienc = encode(tok, ds.train, cfg.data.max_length, limit=cfg.importance_examples, what="importance")
        heads, neurons = head_neuron_importance(teacher, ienc, cfg.batch_size, pad)
        reorder_model(teacher, heads, neurons)  # outputs unchanged; most important heads/neurons first
        importance = f"computed on train[:{len(ienc)}]"
    student, init_notes = make_student(teacher, cfg, seed=cfg.data.seed)
    notes += init_notes
    student.to(acc.device)
    teacher.to(acc.device)

    # W_h: student hidden -> teacher hidden; teacher-slice starts at the embedding of the kept dims
    proj = torch.nn.Linear(cfg.hidden, tshape["hidden"])
    if cfg.init is DistillInit.TEACHER_SLICE:
        with torch.no_grad():
            proj.weight.zero_()
            proj.weight[torch.arange(cfg.hidden), torch.arange(cfg.hidden)] = 1.0
            proj.bias.zero_()
    proj.to(acc.device)

    use_attention = cfg.w_attention > 0 and cfg.heads == tshape["heads"]
    if cfg.w_attention > 0 and not use_attention:
        attention = (f"skipped: student has {cfg.heads} heads, teacher {tshape['heads']} "
                     "(attention-score MSE needs equal head counts)")
        notes.append("attention loss " + attention)
    else:
        attention = "used" if use_attention else "off (w_attention = 0)"
    student_layers = list(range(cfg.layers))

    def make_step(w_logits, w_labels):
        def step(m, b):
            x = (b["input_ids"], b["attention_mask"], b["token_type_ids"])
            with torch.no_grad():
                t = subnet_forward(teacher, *x, want_scores=use_attention)
            s = subnet_forward(m, *x, want_scores=use_attention)
            sp = SubnetOutput(logits=s.logits, hidden=[proj(h) for h in s.hidden] if cfg.w_hidden else s.hidden,
                              scores=s.scores, layers=student_layers)
            loss, parts = distill_loss(sp, _remap_teacher(t, gmap, student_layers), b["attention_mask"],
                                       temperature=cfg.temperature, w_logits=w_logits, w_hidden=cfg.w_hidden,
                                       w_attention=cfg.w_attention if use_attention else 0.0)
            if not w_logits:
                parts.pop("logits", None)
            if w_labels:
                ce = F.cross_entropy(s.logits, b["labels"])
                loss = loss + w_labels * ce
                parts["labels"] = float(ce.detach())
            return loss, parts
        return step

    params = list(student.parameters()) + list(proj.parameters())
    okw = dict(lr=cfg.lr, batch_size=cfg.batch_size, weight_decay=cfg.weight_decay, warmup_frac=cfg.warmup_frac,
               pad_id=pad, params=params)
    stages = {}
    if cfg.intermediate_epochs > 0:
        if not (cfg.w_hidden > 0 or use_attention):
            raise ConfigError("intermediate_epochs: the intermediate step needs w_hidden > 0 or an attention loss")
        stages["intermediate"] = run_loop(acc, student, enc, make_step(0.0, 0.0), epochs=cfg.intermediate_epochs,
                                          seed=cfg.data.seed, what="distill-intermediate", **okw)
    stages["prediction"] = run_loop(acc, student, enc, make_step(cfg.w_logits, cfg.w_labels), epochs=cfg.epochs,
                                    seed=cfg.data.seed + 1, what="distill", **okw)
    train_seconds = round(time.perf_counter() - t0, 2)
    student.eval()
    dev = evaluate_torch(student, tok, ds, "dev", cfg.data, device=acc.device)
    n_student, n_teacher = count_parameters(student), count_parameters(teacher)
    result = {"command": "distill", "teacher": str(folder), "output": str(cfg.output),
              "dataset": ds.info.to_dict(), "train_examples": len(enc), "truncated_train": enc.truncated,
              "teacher_shape": tshape, "student_shape": _shape(student.config), "layer_map": gmap,
              "init": cfg.init.value, "importance": importance, "attention_loss": attention,
              "loss_weights": {"logits": cfg.w_logits, "hidden": cfg.w_hidden, "attention": cfg.w_attention,
                               "labels": cfg.w_labels},
              "temperature": cfg.temperature, "epochs": cfg.epochs, "intermediate_epochs": cfg.intermediate_epochs,
              "lr": cfg.lr, "batch_size": cfg.batch_size, "max_length": cfg.data.max_length,
              "stages": stages, "training": stages["prediction"], "train_seconds": train_seconds,
              "dev": dev, "teacher_dev": teacher_dev,
              "parameters": {"student": n_student, "teacher": n_teacher,
                             "ratio": round(n_student / n_teacher, 4)},
              "notes": notes}
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if acc.is_main_process:
        save_folder(student, tok, cfg.output, meta={"distill": result, "teacher_meta": read_meta(folder)})
    return result
