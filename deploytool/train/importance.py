"""Head and FFN-neuron importance of a fine-tuned classifier, and the reorder of a PyTorch model by it.

Head importance (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"): with a head mask
``xi`` of ones multiplying every head's attention probabilities, ``I_h = sum over batches of
|dL/d xi_h|`` (cross-entropy on the true labels), then each layer's scores are divided by their L2
norm (the paper's layer-wise normalisation).

Neuron importance (DynaBERT, first-order Taylor): a mask of ones multiplies every FFN neuron's
activation; ``I_j = sum over batches of |dL/d mask_j|`` = |sum over tokens of activation * gradient|.

Reordering permutes, per layer, the head blocks (rows of Q, K, V and their biases, the matching
columns of the attention output projection) and the FFN neurons (rows of the intermediate projection
and bias, columns of the output projection) so that the most important come first. The function the
model computes is unchanged (tested); DynaBERT and the ONNX slice pass then keep "the first k".
The scores are written with ``deploytool.importance.save_importance`` (format
``deploytool-importance/1``) in the order of the model that was scored.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from deploytool.errors import InputFileError, OutputPathError
from deploytool.train.batching import batches, encode, model_inputs, torch_threads
from deploytool.train.teacher_data import load_teacher_data
from deploytool.train.checkpoint import check_output_folder, check_outside_input_folders, data_file, \
    load_classifier, load_tokenizer, read_meta, require_classifier, resolve_folder, save_folder
from deploytool.train.config import ImportanceConfig
from deploytool.train.subnet import check_supported, encoder_of

logger = logging.getLogger(__name__)

__all__ = ["head_neuron_importance", "reorder_model", "compute_importance"]


def head_neuron_importance(model, enc, batch_size: int = 32, pad_id: int = 0, device=None):
    """Returns (heads [L, H], neurons [L, F]) float tensors; the model's weights are not changed."""
    cfg = model.config
    layers = encoder_of(model).encoder.layer
    L, H, Fw = len(layers), cfg.num_attention_heads, cfg.intermediate_size
    head_mask = torch.ones(L, H, requires_grad=True, device=device)
    neuron_mask = torch.ones(L, Fw, requires_grad=True, device=device)
    hooks = [layer.intermediate.register_forward_hook(lambda mod, inp, out, i=i: out * neuron_mask[i])
             for i, layer in enumerate(layers)]
    heads = torch.zeros(L, H, device=device)
    neurons = torch.zeros(L, Fw, device=device)
    was_training = model.training
    model.eval()  # no dropout: the scores describe the deployed function
    try:
        for b in batches(enc, batch_size, pad_id=pad_id, device=device):
            logits = model(**model_inputs(model, b), head_mask=head_mask).logits
            loss = F.cross_entropy(logits, b["labels"])
            gh, gn = torch.autograd.grad(loss, [head_mask, neuron_mask])
            heads += gh.abs()
            neurons += gn.abs()
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    heads = heads / heads.norm(dim=1, keepdim=True).clamp_min(1e-20)
    return heads.detach().cpu(), neurons.detach().cpu()


@torch.no_grad()
def reorder_model(model, heads: torch.Tensor, neurons: torch.Tensor):
    """Permute heads and neurons in place, most important first. Returns the per-layer orders."""
    check_supported(model)
    cfg = model.config
    hd = cfg.hidden_size // cfg.num_attention_heads
    orders = []
    for i, layer in enumerate(encoder_of(model).encoder.layer):
        ho = torch.argsort(-heads[i].double(), stable=True)
        no = torch.argsort(-neurons[i].double(), stable=True)
        rows = (ho[:, None] * hd + torch.arange(hd)[None, :]).reshape(-1)
        sa = layer.attention.self
        for lin in (sa.query, sa.key, sa.value):
            lin.weight.copy_(lin.weight[rows])
            lin.bias.copy_(lin.bias[rows])
        o = layer.attention.output.dense
        o.weight.copy_(o.weight[:, rows])
        inter, out = layer.intermediate.dense, layer.output.dense
        inter.weight.copy_(inter.weight[no])
        inter.bias.copy_(inter.bias[no])
        out.weight.copy_(out.weight[:, no])
        orders.append({"heads": ho.tolist(), "neurons": no.tolist()})
    return orders


def compute_importance(cfg: ImportanceConfig) -> dict:
    """Score the model on ``max_examples`` training examples, save the file, optionally the reordered model.
    torch's thread count is ``cfg.threads`` while it runs, the caller's again after."""
    from deploytool.choices import require_config

    require_config(cfg, ImportanceConfig, "compute_importance")  # a path or a dict: ConfigError, not AttributeError
    with torch_threads(cfg.threads):
        return _compute_importance(cfg)


def _compute_importance(cfg: ImportanceConfig) -> dict:
    from deploytool.importance import save_importance
    from deploytool.onnx_io import check_output_path

    t0 = time.perf_counter()
    folder = resolve_folder(cfg.model)
    require_classifier(folder, "model")  # the gradients of a random head's loss say nothing of the heads
    reads = [f for f in Path(folder).iterdir() if f.is_file()]
    data = getattr(cfg.data, "data", None)
    if isinstance(data, (str, os.PathLike)) and Path(data).is_file():
        reads.append(Path(data))
    check_output_path(cfg.output, inputs=tuple(reads))  # not the model's files, not the data it scores on
    check_outside_input_folders(cfg.output, (folder,), "file")  # nor a new file in the model's folder
    if cfg.reorder_output is not None:
        if Path(cfg.reorder_output).resolve() == Path(cfg.output).resolve():
            raise OutputPathError(f"{cfg.output}: the importance file and the reordered model (--reorder) would be "
                                  "written to the same path; give two")
        if Path(cfg.reorder_output).resolve().is_relative_to(Path(cfg.output).resolve()):  # under the file it writes
            raise OutputPathError(f"{cfg.reorder_output}: the --reorder folder is under the importance file "
                                  f"{cfg.output}, which is written as a file; give a folder elsewhere")
        if Path(cfg.output).resolve().is_relative_to(Path(cfg.reorder_output).resolve()):
            # the folder is written whole after the file: a model folder there deleted the file (exit 0), a new one
            # was refused as 'not empty' once the file was in it
            raise OutputPathError(f"{cfg.output}: the importance file is inside the --reorder folder "
                                  f"{cfg.reorder_output}, which the reordered model replaces; give a path outside it")
        check_output_folder(cfg.reorder_output, inputs=(folder, data_file(cfg.data)))
    ds = load_teacher_data(cfg.data, folder)  # the teacher's ids; its recorded dataset by default
    tok = load_tokenizer(folder)
    model = load_classifier(folder, num_labels=ds.num_labels)
    check_supported(model)
    from deploytool.train.batching import check_max_length, check_vocab, torch_max_length

    check_max_length(cfg.data.max_length, torch_max_length(model), str(folder))  # before any example runs
    check_vocab(tok, model, str(folder))
    limit = min(cfg.max_examples, cfg.data.max_train or cfg.max_examples)  # --max-train was ignored here
    enc = encode(tok, ds.train, cfg.data.max_length, limit=limit, what="importance")
    heads, neurons = head_neuron_importance(model, enc, cfg.batch_size, tok.pad_token_id or 0)
    if not (bool(torch.isfinite(heads).all()) and bool(torch.isfinite(neurons).all())):
        # said as the file's validation ("importance: 'heads' layer 0 holds nan or inf"), not as the model's fault
        raise InputFileError(f"{folder}: non-finite gradients (NaN or inf) on its {len(enc)} examples: the model's "
                             "weights or outputs are not finite; no importance can be scored")
    source = f"gradient (Michel et al. 2019 heads, DynaBERT Taylor neurons) on {ds.name} train[:{len(enc)}]"
    save_importance(cfg.output, heads.tolist(), neurons.tolist(), source=source, model=str(folder))
    result = {"command": "importance", "model": str(folder), "output": str(cfg.output), "examples": len(enc),
              "truncated": enc.truncated, "layers": heads.shape[0], "heads": heads.shape[1],
              "ffn": neurons.shape[1], "dataset": ds.info.to_dict()}
    if cfg.reorder_output is not None:
        from deploytool.train.batching import batches as _b
        ref = copy.deepcopy(model)
        orders = reorder_model(model, heads, neurons)
        b = next(_b(enc, min(16, len(enc)), pad_id=tok.pad_token_id or 0))
        with torch.no_grad():
            kw = model_inputs(model, b)
            diff = float((model(**kw).logits - ref(**kw).logits).abs().max())
        result["reorder_max_diff"] = diff
        meta = dict(read_meta(folder))
        meta["reordered"] = {"importance": str(cfg.output), "orders": orders, "max_logit_change": diff}
        save_folder(model, tok, cfg.reorder_output, meta=meta)
        result["reorder_output"] = str(cfg.reorder_output)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result
