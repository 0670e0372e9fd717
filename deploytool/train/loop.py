"""The one training loop every verb uses: AdamW, linear warm-up/decay, accelerate, loss history."""

from __future__ import annotations

import logging
import math
import time

import torch

from deploytool.train.batching import Encoded, batches

logger = logging.getLogger(__name__)

__all__ = ["run_loop"]


def run_loop(acc, model, enc: Encoded, step_fn, *, epochs: float, lr: float, batch_size: int,
             weight_decay: float = 0.01, warmup_frac: float = 0.1, seed: int = 0, pad_id: int = 0,
             params=None, log_every: int | None = None, what: str = "train", on_epoch=None) -> dict:
    """Train ``model`` with ``step_fn(model, batch) -> (loss, parts)`` for ``epochs`` passes over ``enc``.

    ``on_epoch(epoch_index, step)``, if given, runs after each full pass (the model in eval mode; its
    return value is kept in ``"per_epoch"``). Returns {"steps", "seconds", "losses" (one mean per log
    window), "first_loss", "last_loss"} (+ "per_epoch").
    """
    world = acc.num_processes
    per_epoch = math.ceil(len(enc) / (batch_size * world))
    total = max(1, int(round(epochs * per_epoch)))
    params = list(params if params is not None else model.parameters())
    decay = [p for p in params if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in params if p.requires_grad and p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    log_every = log_every or max(1, min(20, total // 5))  # at least ~5 points of loss history
    warm = int(warmup_frac * total)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    # the model is moved, not wrapped: sub-network forwards call its modules directly, so gradients
    # are averaged across processes by hand after backward (a no-op on one process)
    model.to(acc.device)
    model.train()
    step, window, history, per_epoch_out = 0, [], [], []
    t0 = time.perf_counter()
    epoch = 0
    while step < total:
        for batch in batches(enc, batch_size, pad_id=pad_id, shuffle=True, seed=seed + epoch, device=acc.device,
                             shard=(acc.process_index, world)):
            loss, parts = step_fn(model, batch)
            value = float(loss.detach())
            if not math.isfinite(value):  # a NaN or infinite loss leaves NaN weights behind
                from deploytool.errors import DeployError

                raise DeployError(f"{what or 'training'}: the loss is {value} at step {step + 1} of "
                                  f"{total} (a learning rate or loss weight too large, or NaN in the model or data); "
                                  "nothing saved")
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            if world > 1:
                for p in params:
                    if p.grad is not None:
                        p.grad = acc.reduce(p.grad, reduction="mean")
            opt.step()
            sched.step()
            window.append(value)
            step += 1
            if step % log_every == 0 or step == total:
                history.append(sum(window) / len(window))
                logger.info("%s step %d/%d loss %.4f %s", what, step, total, history[-1],
                            {k: round(v, 4) for k, v in parts.items()})
                window = []
            if step >= total:
                break
        epoch += 1
        if on_epoch is not None and step % per_epoch == 0:
            model.eval()
            per_epoch_out.append(on_epoch(epoch - 1, step))
            model.train()
    model.eval()
    out = {"steps": step, "seconds": round(time.perf_counter() - t0, 2), "losses": [round(x, 5) for x in history],
           "first_loss": history[0] if history else None, "last_loss": history[-1] if history else None}
    if on_epoch is not None:
        out["per_epoch"] = per_epoch_out
    return out
