"""DynaBERT (Hou et al. 2020): one model whose sub-networks of several widths and depths all work.

1. Rewire: compute head/neuron importance of the fine-tuned teacher (or read it) and reorder the
   teacher so the most important heads and neurons come first (outputs unchanged).
2. Width-adaptive stage: every step, each width ``w`` in ``widths`` (sub-network = the first
   ``round(w*H)`` heads and ``int(round(w*H)/H*F)`` neurons of every layer, Python's ``round`` as in
   DynaBERT's code; see ``train/subnet.py``) is distilled from the full
   rewired teacher: soft cross-entropy on logits + MSE on embedding/layer outputs + MSE on attention
   scores of the kept heads (TinyBERT-style). Gradients of all widths are summed before each step.
3. Width-and-depth stage: the stage-1 model (frozen) at width ``w``, full depth, teaches the student
   at ``(w, d)`` for every depth ``d``, layers ``floor(i/d)`` kept; each kept layer's attention
   scores match the teacher's at the same layer, its output the teacher's input to the next kept
   layer (the last one: the teacher's final output), as in DynaBERT's code (``losses.layer_maps``).

``subnets_per_step = k > 0`` is a cheaper schedule for small machines; 0 trains all (the paper). The
width stage then trains the largest, the smallest and ``k - 2`` random widths per step (the "sandwich
rule"); the depth stage trains every depth every step, at rotating widths (``pick_subnets_by_depth``).
The result is a normal HF folder: export it once, then ``deploytool slice --width w --depth d``.
"""

from __future__ import annotations

import copy
import itertools
import logging
import random
import time

import torch

from deploytool.train.batching import check_max_length, check_vocab, encode, make_accelerator, torch_max_length
from deploytool.train.teacher_data import load_teacher_data
from deploytool.train.checkpoint import check_output_folder, data_file, load_classifier, load_tokenizer, read_meta, \
    require_classifier, resolve_folder, save_folder
from deploytool.train.batching import keeps_torch_threads
from deploytool.train.config import DynaBertConfig
from deploytool.train.evaluate import evaluate_torch
from deploytool.train.importance import head_neuron_importance, reorder_model
from deploytool.train.losses import distill_loss
from deploytool.train.loop import run_loop
from deploytool.train.subnet import check_sizes, check_supported, subnet_forward

logger = logging.getLogger(__name__)

__all__ = ["train_dynabert", "pick_subnets", "pick_subnets_by_depth"]


def pick_subnets(grid: list[tuple[float, float]], k: int, rng: random.Random) -> list[tuple[float, float]]:
    """All of ``grid`` (k == 0 or k >= len) or the largest, the smallest and k-2 random others."""
    if k <= 0 or k >= len(grid):
        return list(grid)
    big, small = max(grid), min(grid)
    rest = [g for g in grid if g not in (big, small)]
    return [big, small] + rng.sample(rest, max(0, k - 2))[: max(0, k - 2)]


def pick_subnets_by_depth(widths, depths, k: int, step: int, rng: random.Random) -> list[tuple[float, float]]:
    """The depth stage's sample at ``step``: every depth every step, the widths rotating (a Latin square).

    Depth ``depths[j]`` runs at width ``widths[(step + j) % len(widths)]``, so each step trains every
    depth once, at different widths, and every (width, depth) pair gets the same share of steps;
    ``k`` larger than the number of depths adds random pairs not yet chosen. ``k == 0`` (or at least
    the grid's size): the whole grid, every step (DynaBERT's code).

    Why not the sandwich over the whole grid (largest, smallest, k-2 random): a sub-network that drops
    layers starts this stage at the majority class and needs every step's gradient to leave it. With
    all-MiniLM-L6-v2 (pretrained with mean pooling) the [CLS] state carries almost no input until the
    last layer (its spread across inputs: 0.001 after layers 1-3, 0.006 after layer 4, 0.38 after the
    fine-tuned layer 6), and DynaBERT's rule drops the last layer at every depth below 1; sampled one
    step in four, depth 0.75 was still at the majority class after the quickstart's stage (59-60%).
    """
    ws, ds = list(widths), sorted(depths, reverse=True)
    grid = [(w, d) for w in ws for d in ds]
    if k <= 0 or k >= len(grid):
        return grid
    chosen = [(ws[(step + j) % len(ws)], d) for j, d in enumerate(ds)]
    rest = [g for g in grid if g not in chosen]
    return chosen + rng.sample(rest, min(max(0, k - len(chosen)), len(rest)))


def _inputs(b):
    return b["input_ids"], b["attention_mask"], b["token_type_ids"]


@keeps_torch_threads
def train_dynabert(cfg: DynaBertConfig) -> dict:
    from deploytool.choices import require_config

    require_config(cfg, DynaBertConfig, "train_dynabert")  # a path or a dict: ConfigError, not AttributeError
    t0 = time.perf_counter()
    folder = resolve_folder(cfg.teacher)
    require_classifier(folder, "teacher")  # a random head would teach noise
    check_output_folder(cfg.output, inputs=(folder, cfg.importance, data_file(cfg.data)))
    ds = load_teacher_data(cfg.data, folder)  # the teacher's ids; its recorded dataset by default
    acc = make_accelerator(cfg.threads, cfg.cpu, cfg.data.seed)
    tok = load_tokenizer(folder)
    model = load_classifier(folder, num_labels=ds.num_labels)
    check_supported(model)
    check_max_length(cfg.data.max_length, torch_max_length(model), f"the teacher {folder}")  # before any training
    check_vocab(tok, model, f"the teacher {folder}")
    check_sizes(model, cfg.widths, cfg.depths if cfg.depth_epochs > 0 else ())
    pad = tok.pad_token_id or 0
    enc = encode(tok, ds.train, cfg.data.max_length, limit=cfg.data.max_train, what="train")

    # 1. rewire by importance
    if cfg.importance is not None:
        from deploytool.importance import load_importance

        imp = load_importance(cfg.importance)
        heads, neurons = torch.tensor(imp.heads), torch.tensor(imp.neurons)
        cfgm = model.config
        if tuple(heads.shape) != (cfgm.num_hidden_layers, cfgm.num_attention_heads) or \
                tuple(neurons.shape) != (cfgm.num_hidden_layers, cfgm.intermediate_size):
            from deploytool.errors import ConfigError
            raise ConfigError(f"{cfg.importance}: scores of shape heads {list(heads.shape)}, neurons "
                              f"{list(neurons.shape)} do not fit the teacher")
        imp_source = str(cfg.importance)
    else:
        ienc = encode(tok, ds.train, cfg.data.max_length, limit=cfg.importance_examples, what="importance")
        heads, neurons = head_neuron_importance(model, ienc, cfg.batch_size, pad)
        imp_source = f"computed on train[:{len(ienc)}]"
    reorder_model(model, heads, neurons)
    model.to(acc.device)
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    rng = random.Random(cfg.data.seed)
    dkw = dict(temperature=cfg.temperature, w_logits=cfg.w_logits, w_hidden=cfg.w_hidden,
               w_attention=cfg.w_attention)
    want = cfg.w_attention > 0
    stages = {}

    # 2. width-adaptive
    if cfg.width_epochs > 0:
        grid = [(w, 1.0) for w in cfg.widths]

        def step_w(m, b):
            with torch.no_grad():
                t = subnet_forward(teacher, *_inputs(b), want_scores=want)
            total, parts = 0.0, {}
            chosen = pick_subnets(grid, cfg.subnets_per_step, rng)
            for w, _ in chosen:
                s = subnet_forward(m, *_inputs(b), width=w, want_scores=want)
                loss, p = distill_loss(s, t, b["attention_mask"], **dkw)
                total = total + loss
                parts[f"w{w:g}"] = float(loss.detach())
            return total / len(chosen), parts

        stages["width"] = run_loop(acc, model, enc, step_w, epochs=cfg.width_epochs, lr=cfg.lr,
                                   batch_size=cfg.batch_size, weight_decay=cfg.weight_decay,
                                   warmup_frac=cfg.warmup_frac, seed=cfg.data.seed, pad_id=pad, what="dynabert-w")

    # 3. width- and depth-adaptive, taught by the width-adaptive model
    if cfg.depth_epochs > 0:
        teacher2 = copy.deepcopy(model).eval().requires_grad_(False)
        counter = itertools.count()

        def step_wd(m, b):
            chosen = pick_subnets_by_depth(cfg.widths, cfg.depths, cfg.subnets_per_step, next(counter), rng)
            tcache = {}
            total, parts = 0.0, {}
            for w, d in chosen:
                if w not in tcache:
                    with torch.no_grad():
                        tcache[w] = subnet_forward(teacher2, *_inputs(b), width=w, want_scores=want)
                s = subnet_forward(m, *_inputs(b), width=w, depth=d, want_scores=want)
                loss, _ = distill_loss(s, tcache[w], b["attention_mask"], **dkw)
                total = total + loss
                parts[f"w{w:g}d{d:g}"] = float(loss.detach())
            return total / len(chosen), parts

        stages["depth"] = run_loop(acc, model, enc, step_wd, epochs=cfg.depth_epochs, lr=cfg.lr,
                                   batch_size=cfg.batch_size, weight_decay=cfg.weight_decay,
                                   warmup_frac=cfg.warmup_frac, seed=cfg.data.seed + 1, pad_id=pad,
                                   what="dynabert-wd")
    train_seconds = round(time.perf_counter() - t0, 2)
    depths = cfg.depths if cfg.depth_epochs > 0 else (1.0,)
    dev = []
    for w in cfg.widths:
        for d in depths:
            r = evaluate_torch(model, tok, ds, "dev", cfg.data, device=acc.device, width=w, depth=d)
            dev.append({"width": w, "depth": d, "accuracy": r["accuracy"], "f1_macro": r["f1_macro"], "n": r["n"]})
    result = {"command": "dynabert", "teacher": str(folder), "output": str(cfg.output),
              "dataset": ds.info.to_dict(), "train_examples": len(enc), "truncated_train": enc.truncated,
              "widths": list(cfg.widths), "depths": list(cfg.depths), "subnets_per_step": cfg.subnets_per_step,
              "importance": imp_source, "stages": stages, "train_seconds": train_seconds, "dev": dev,
              "lr": cfg.lr, "batch_size": cfg.batch_size, "max_length": cfg.data.max_length,
              "width_epochs": cfg.width_epochs, "depth_epochs": cfg.depth_epochs}
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if acc.is_main_process:
        meta = {"dynabert": result, "teacher_meta": read_meta(folder)}
        save_folder(model, tok, cfg.output, meta=meta)
    return result
