"""TernaryBERT / BinaryBERT: quantization-aware distillation of the encoder weights.

Every encoder Linear weight (Q, K, V, O, FFN in/out) and, by default, the word-embedding table is
replaced in the forward pass by its quantized value, computed by the SAME numpy functions the
``pack`` pass uses (``deploytool.quant.quantizers``), so training sees exactly the numbers the
packed ONNX model will hold:

- ternary (TWN): ``delta = 0.7 mean|W|``, ``t = sign(W)[|W| > delta]``, ``alpha = mean(|W| : |W| > delta)``;
- binary (BWN): ``s = sign(W)`` (sign 0 = +1), ``alpha = mean|W|``;

one alpha per matrix (granularity ``layer``) or per output feature (``row``); embeddings row-wise.

Backward is a straight-through estimator with clipping: ``dL/dW = dL/dW_q * 1{|W| <= clip * alpha}``
(``clip = 0``: no clipping), applied to full-precision latent weights. The loss distils the
full-precision teacher: soft cross-entropy on logits + hidden-state MSE + attention-score MSE
(TernaryBERT). At the end the latent weights are replaced by their quantized values, so the saved
folder holds exactly ``alpha * t`` per matrix and ``deploytool pack`` reproduces it losslessly.
Activations (``act_bits = 8``, the default: TernaryBERT's 2-2-8 setting): the input of every quantized
Linear is fake-quantized in the forward pass exactly as the packed ``speed`` runtime quantizes it at
run time, ONNX's ``DynamicQuantizeLinear`` (what ``DynamicQuantizeMatMul`` does to its A input), one
scale per tensor::

    scale = (max(0, max x) - min(0, min x)) / 255
    zp    = clip(round(-min(0, min x) / scale), 0, 255)        # round half to even
    x_q   = (clip(round(x / scale) + zp, 0, 255) - zp) * scale

with a straight-through gradient. TernaryBERT quantizes activations symmetrically (``max|x| / 127``);
we restate the runtime's asymmetric rule instead, so that PyTorch and the packed model compute the
same numbers. ``act_bits = 0`` keeps activations fp32 (what the ``memory`` runtime at accuracy level 0
computes). The choice is recorded in the folder's ``deploytool.json`` (``qat.act_bits``), and
``evaluate_torch`` / ``deploytool eval`` apply it when they evaluate the folder.

BinaryBERT's ternary weight splitting (``tws=True``, mode binary; Bai et al. 2021 and its public code,
``binary_model_init.py``): the student starts as the width-``tws_width`` sub-network of ``init`` (a
DynaBERT folder: importance-ordered, trained to work at that width), cut out for real
(:func:`~deploytool.train.subnet.prune_to_width`); it trains as a ternary model for a share of the
epochs, then every quantized Linear's latent weight ``w`` is split into ``(w1, w2)``
(:func:`~deploytool.quant.quantizers.split_ternary`) so that ``binarize(w1) + binarize(w2)`` equals
``ternarize(w)``: an equivalent binary model with two planes per weight (same accuracy at the split,
checked and recorded), which trains for the rest of the epochs with each plane binarized (BWN, its
own scale, straight-through). The word embeddings are split the same way, row by row. The saved
weights are ``alpha1 s1 + alpha2 s2``; ``deploytool pack --weights split-binary`` recovers both planes
exactly.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils import parametrize

from deploytool.errors import ConfigError, InputFileError
from deploytool.quant.quantizers import binarize, dequantize, split_ternary, ternarize
from deploytool.train.batching import check_max_length, check_vocab, encode, make_accelerator, torch_max_length
from deploytool.train.teacher_data import check_same_labels, load_teacher_data
from deploytool.train.checkpoint import check_output_folder, data_file, load_classifier, load_tokenizer, read_meta, \
    require_classifier, resolve_folder, save_folder, TOKENIZER_FILES
from deploytool.train.batching import keeps_torch_threads
from deploytool.train.config import QATConfig, QuantMode
from deploytool.train.evaluate import evaluate_torch
from deploytool.train.losses import distill_loss
from deploytool.train.loop import run_loop
from deploytool.train.actquant import act_fn_for, fake_quant_act
from deploytool.train.subnet import check_sizes, check_supported, encoder_linears, encoder_of, prune_to_width, subnet_forward

logger = logging.getLogger(__name__)

__all__ = ["fake_quant_act", "act_fn_for", "quantize_weight", "WeightQuantizer", "TwoPlaneQuantizer",
           "attach_quantizers", "split_to_planes", "freeze_quantized", "train_qat", "quantized_modules"]


def quantize_weight(w: torch.Tensor, mode: QuantMode | str, granularity: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha * codes, alpha broadcastable to w), computed by the shared numpy quantizers."""
    fn = binarize if QuantMode(mode) is QuantMode.BINARY else ternarize
    codes, alpha = fn(w.detach().to("cpu", torch.float32).numpy(), granularity)
    q = torch.from_numpy(dequantize(codes, alpha)).to(device=w.device, dtype=w.dtype)
    a = torch.from_numpy(np.asarray(alpha, dtype=np.float32)).to(device=w.device, dtype=w.dtype)
    return q, (a if a.dim() == 0 else a[:, None])


class _STE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, q, keep):
        ctx.save_for_backward(keep)
        return q

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return grad * keep, None, None


class WeightQuantizer(torch.nn.Module):
    """A parametrization: ``weight`` reads as its quantized value; gradients go straight through."""

    def __init__(self, mode: QuantMode | str, granularity: str, clip: float):
        super().__init__()
        self.mode, self.granularity, self.clip = QuantMode(mode), granularity, float(clip)

    def forward(self, w):
        q, alpha = quantize_weight(w, self.mode, self.granularity)
        keep = (w.abs() <= self.clip * alpha).to(w.dtype) if self.clip > 0 else torch.ones_like(w)
        return _STE.apply(w, q, keep)


class TwoPlaneQuantizer(torch.nn.Module):
    """A parametrization: ``weight`` reads as ``binarize(w1) + binarize(w2)`` (BinaryBERT after the
    split); ``w1`` is the parametrized latent weight, ``w2`` a parameter of this module. Each plane has
    its own BWN scale and straight-through gradient."""

    def __init__(self, w2: torch.Tensor, granularity: str, clip: float):
        super().__init__()
        self.w2 = torch.nn.Parameter(w2)
        self.plane = WeightQuantizer(QuantMode.BINARY, granularity, clip)

    def forward(self, w1):
        return self.plane(w1) + self.plane(self.w2)


def quantized_modules(model, quantize_embeddings: bool = True) -> dict[str, tuple[torch.nn.Module, str]]:
    """name -> (module, granularity override or '') of every weight QAT quantizes."""
    mods = {n: (m, "") for n, m in encoder_linears(model).items()}
    if quantize_embeddings:
        mods["word_embeddings"] = (encoder_of(model).embeddings.word_embeddings, "row")
    return mods


def attach_quantizers(model, mode, granularity: str = "layer", clip: float = 3.0, quantize_embeddings: bool = True):
    for _, (mod, g) in quantized_modules(model, quantize_embeddings).items():
        parametrize.register_parametrization(mod, "weight", WeightQuantizer(mode, g or granularity, clip))
    return model


def split_to_planes(model, granularity: str = "layer", clip: float = 3.0, quantize_embeddings: bool = True) -> dict:
    """Ternary QAT model -> the equivalent two-plane binary one, in place (the TWS operator on every
    quantized Linear's latent weight and, row by row, the word embeddings'). Returns the
    largest |ternary - (plane1 + plane2)| per module kind (0 up to float rounding)."""
    worst = {"linear": 0.0}
    for name, (mod, g) in quantized_modules(model, quantize_embeddings).items():
        if not parametrize.is_parametrized(mod, "weight"):
            continue
        before = mod.weight.detach().clone()
        parametrize.remove_parametrizations(mod, "weight", leave_parametrized=False)  # back to the latent
        latent = mod.weight.detach().to("cpu", torch.float32).numpy()
        w1, w2 = split_ternary(latent, g or granularity)
        with torch.no_grad():
            mod.weight.copy_(torch.from_numpy(w1))
        plane2 = torch.from_numpy(w2).to(device=mod.weight.device, dtype=mod.weight.dtype)
        parametrize.register_parametrization(mod, "weight", TwoPlaneQuantizer(plane2, g or granularity, clip))
        kind = "embedding" if name == "word_embeddings" else "linear"
        worst[kind] = max(worst.get(kind, 0.0), float((mod.weight.detach() - before).abs().max()))
    return worst


def freeze_quantized(model):
    """Replace latent weights by their quantized values and drop the parametrizations."""
    for mod in list(model.modules()):
        if parametrize.is_parametrized(mod, "weight"):
            parametrize.remove_parametrizations(mod, "weight", leave_parametrized=True)
    return model


def check_init_fits(teacher, teacher_folder, init, init_folder, tok) -> None:
    """InputFileError unless the ``--init`` model can be distilled from the teacher: the same hidden size and heads
    per layer (the hidden-state and attention losses compare them: another size died in the first step with torch's
    size mismatch, an internal error) and, where its folder has a tokenizer, the teacher's vocabulary (the teacher's
    tokenizer makes the ids: another vocabulary of the same size trained and saved a model whose embeddings were
    read under other tokens, without a word)."""
    what = f"--init model {init_folder}"
    for attr, name in (("hidden_size", "hidden size"), ("num_attention_heads", "attention heads per layer")):
        a, b = getattr(init.config, attr, None), getattr(teacher.config, attr, None)
        if a is not None and b is not None and a != b:
            raise InputFileError(f"{what}: {name} {a}, the teacher's ({teacher_folder}) {b}; the student is "
                                 "distilled from the teacher layer by layer: give a model of the teacher's shape "
                                 "(the teacher's DynaBERT folder, say)")
    if not any((Path(init_folder) / n).is_file() for n in TOKENIZER_FILES):
        return
    own = load_tokenizer(init_folder).get_vocab()
    theirs = tok.get_vocab()
    if own != theirs:
        diff = sorted(set(own.items()) ^ set(theirs.items()), key=lambda kv: kv[1])
        token, tid = diff[0]
        which = "the --init model's" if own.get(token) == tid else "the teacher's"
        raise InputFileError(f"{what}: its tokenizer's vocabulary is not the teacher's ({teacher_folder}): "
                             f"{len(own):,} tokens against {len(theirs):,}, first difference id {tid} "
                             f"({which} {token!r}); its embeddings were trained on other token ids: give a model "
                             "trained with the teacher's tokenizer")


@keeps_torch_threads
def train_qat(cfg: QATConfig) -> dict:
    from deploytool.choices import require_config

    require_config(cfg, QATConfig, "train_qat")  # a path or a dict: ConfigError, not AttributeError
    t0 = time.perf_counter()
    folder = resolve_folder(cfg.teacher)
    require_classifier(folder, "teacher")  # a random head would teach noise
    inputs = (folder, data_file(cfg.data)) + ((resolve_folder(cfg.init),) if cfg.init is not None else ())
    check_output_folder(cfg.output, inputs=inputs)  # -o may name neither the teacher nor the --init model
    ds = load_teacher_data(cfg.data, folder)  # the teacher's ids; its recorded dataset by default
    if cfg.init is not None:
        check_same_labels(folder, resolve_folder(cfg.init), "--init")
    acc = make_accelerator(cfg.threads, cfg.cpu, cfg.data.seed)
    tok = load_tokenizer(folder)
    teacher = load_classifier(folder, num_labels=ds.num_labels)
    check_supported(teacher)
    check_max_length(cfg.data.max_length, torch_max_length(teacher), f"the teacher {folder}")  # before any training
    check_vocab(tok, teacher, f"the teacher {folder}")
    if cfg.tws:  # the --init model checked before any work (the teacher's dev accuracy: minutes on a real model)
        init_folder = resolve_folder(cfg.init) if cfg.init is not None else folder
        # a model of its own to cut: the teacher's copy, or the --init folder loaded (nothing else holds it)
        init = copy.deepcopy(teacher) if cfg.init is None else load_classifier(init_folder, num_labels=ds.num_labels)
        check_supported(init)
        check_max_length(cfg.data.max_length, torch_max_length(init), f"the --init model {init_folder}")
        check_vocab(tok, init, f"the --init model {init_folder}", tokenizer_from=folder)  # the teacher's tokens
        if cfg.init is not None:
            check_init_fits(teacher, folder, init, init_folder, tok)
    teacher.to(acc.device).eval().requires_grad_(False)
    pad = tok.pad_token_id or 0
    enc = encode(tok, ds.train, cfg.data.max_length, limit=cfg.data.max_train, what="train")
    teacher_dev = evaluate_torch(teacher, tok, ds, "dev", cfg.data, device=acc.device)
    if cfg.tws:
        try:  # a width that keeps no head was cut to one head and recorded as the width asked for (dynabert refuses it)
            check_sizes(init, (cfg.tws_width,), ())
        except ConfigError as e:
            raise ConfigError(str(e).replace("widths: ", "tws_width: ", 1)) from None
        student = prune_to_width(init.to(acc.device), cfg.tws_width).requires_grad_(True)
        first_mode = QuantMode.TERNARY
    else:
        student = copy.deepcopy(teacher).requires_grad_(True)
        first_mode = cfg.mode
    attach_quantizers(student, first_mode, cfg.granularity, cfg.clip, cfg.quantize_embeddings)
    act = act_fn_for(cfg.act_bits)
    post_training = evaluate_torch(student, tok, ds, "dev", cfg.data, device=acc.device, act_bits=cfg.act_bits)
    want = cfg.w_attention > 0
    dkw = dict(temperature=cfg.temperature, w_logits=cfg.w_logits, w_hidden=cfg.w_hidden, w_attention=cfg.w_attention)

    def step(m, b):
        x = (b["input_ids"], b["attention_mask"], b["token_type_ids"])
        with torch.no_grad():
            t = subnet_forward(teacher, *x, want_scores=want)
        s = subnet_forward(m, *x, act_fn=act, want_scores=want)
        if want and cfg.tws:  # the student keeps the teacher's first heads of each layer
            t.scores = [ts[:, :ss.shape[1]] for ts, ss in zip(t.scores, s.scores)]
        return distill_loss(s, t, b["attention_mask"], **dkw)

    loop = dict(lr=cfg.lr, batch_size=cfg.batch_size, weight_decay=0.0, warmup_frac=cfg.warmup_frac,
                seed=cfg.data.seed, pad_id=pad)
    tws = None
    if cfg.tws:
        e1 = cfg.epochs * cfg.tws_ternary_share
        h1 = run_loop(acc, student, enc, step, epochs=e1, what="qat-tws-ternary", **loop)
        ternary_dev = evaluate_torch(student, tok, ds, "dev", cfg.data, device=acc.device, act_bits=cfg.act_bits)
        worst = split_to_planes(student, cfg.granularity, cfg.clip, cfg.quantize_embeddings)
        split_dev = evaluate_torch(student, tok, ds, "dev", cfg.data, device=acc.device, act_bits=cfg.act_bits)
        h2 = run_loop(acc, student, enc, step, epochs=cfg.epochs - e1, what="qat-tws-binary", **loop)
        hist = {"steps": h1["steps"] + h2["steps"], "seconds": round(h1["seconds"] + h2["seconds"], 2),
                "losses": h1["losses"] + h2["losses"], "first_loss": h1["first_loss"], "last_loss": h2["last_loss"],
                "stages": {"ternary": h1, "binary": h2}}
        tws = {"width": cfg.tws_width, "ternary_share": cfg.tws_ternary_share, "ternary_epochs": e1,
               "binary_epochs": cfg.epochs - e1, "init": str(init_folder), "ternary_dev": ternary_dev,
               "split_dev": split_dev, "split_max_abs_diff": worst,
               "heads_per_layer": [lyr.attention.self.num_attention_heads
                                   for lyr in encoder_of(student).encoder.layer],
               "ffn_size": int(student.config.intermediate_size),
               "embeddings": "two binary planes, row-wise (as BinaryBERT)" if cfg.quantize_embeddings else "fp32",
               "pack": "deploytool pack --weights split-binary"}
    else:
        hist = run_loop(acc, student, enc, step, epochs=cfg.epochs, what=f"qat-{cfg.mode.value}", **loop)
    freeze_quantized(student)
    dev = evaluate_torch(student, tok, ds, "dev", cfg.data, device=acc.device, act_bits=cfg.act_bits)
    result = {"command": "qat", "mode": cfg.mode.value, "granularity": cfg.granularity, "clip": cfg.clip,
              "act_bits": cfg.act_bits,
              "quantize_embeddings": cfg.quantize_embeddings, "teacher": str(folder), "output": str(cfg.output),
              "dataset": ds.info.to_dict(), "train_examples": len(enc), "truncated_train": enc.truncated,
              "epochs": cfg.epochs, "lr": cfg.lr, "batch_size": cfg.batch_size, "max_length": cfg.data.max_length,
              "training": hist, "teacher_dev": teacher_dev, "post_training_quantized_dev": post_training,
              "dev": dev, "quantized": sorted(quantized_modules(student, cfg.quantize_embeddings))}
    if tws is not None:
        result["tws"] = tws
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if acc.is_main_process:
        save_folder(student, tok, cfg.output, meta={"qat": result, "teacher_meta": read_meta(folder)})
    return result
