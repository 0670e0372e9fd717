"""Hugging Face folders laid out as the hub's own-code embedding models are (tests only).

jina-embeddings-v2, nomic-embed-text and gte-*-v1.5 ship their modeling code beside their weights: ``config.json``
names it in ``auto_map`` (``"AutoModel": "modeling_x.XModel"``) and transformers runs it only with
``trust_remote_code``. jina-embeddings-v2's configuration even says ``model_type: "bert"``: without its own code,
transformers builds a plain BertModel from it, with the FFN and position weights it lacks made up at random.

:func:`write_hub_folder` writes such a folder for one of deploytool's restated architectures
(``deploytool.testing.jina_bert``, ``nomic_bert``, ``gte``): ``config.json`` with the hub's ``model_type`` and
``auto_map``, a ``configuration_*.py`` and a ``modeling_*.py`` (a ``PreTrainedModel`` around the restated
modules, with the hub's weight names) and ``model.safetensors``.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

__all__ = ["HUB_CODE", "write_hub_folder"]

# family -> (hub model_type, restated module, its config and model classes, the hub's configuration field names
# where they are not the restated config's)
HUB_CODE = {
    "jina-bert": ("bert", "deploytool.testing.jina_bert", "JinaBertConfig", "JinaBertModel", {}),
    "nomic-bert": ("nomic_bert", "deploytool.testing.nomic_bert", "NomicBertConfig", "NomicBertModel",
                   # NomicBertConfig on the hub is GPT-2 style
                   {"hidden_size": "n_embd", "num_attention_heads": "n_head", "num_hidden_layers": "n_layer",
                    "intermediate_size": "n_inner", "max_position_embeddings": "n_positions"}),
    "gte": ("new", "deploytool.testing.gte", "GteConfig", "GteModel", {}),
}

_CONFIGURATION = '''\
from {module} import {config} as _Restated


class HubConfig(_Restated):
    model_type = "{model_type}"
    attribute_map = {names!r}  # the restated field names read the hub's (GPT-2 style for NomicBERT)

    def __init__(self, **kw):
        for hub, ours in {renamed!r}.items():  # config.json's fields under the restated config's names
            if hub in kw:
                kw[ours] = kw.pop(hub)
        super().__init__(**kw)
'''

_MODELING = '''\
import torch
from transformers import PreTrainedModel

from {module} import {model} as _Restated

from .configuration_hub import HubConfig


class HubModel(PreTrainedModel):
    config_class = HubConfig
    base_model_prefix = ""

    def __init__(self, config):
        super().__init__(config)
        core = _Restated(config)
        for name, child in core.named_children():  # the restated model's modules, under their own names
            self.add_module(name, child)
        for name, buf in core.named_buffers(recurse=False):
            self.register_buffer(name, buf, persistent=False)
        self._core = [core]  # its forward, not a submodule

    def _init_weights(self, module):
        pass  # the restated model initialised itself; the checkpoint's weights load over it

    def get_input_embeddings(self):
        return self._core[0].get_input_embeddings()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, return_dict=True, **kw):
        return self._core[0](input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
'''


def write_hub_folder(family: str, folder: Path, config_kw: dict | None = None, seed: int = 0, model=None) -> Path:
    """A hub-style own-code folder of ``family`` (a key of :data:`HUB_CODE`) in ``folder``; its weights are
    ``model``'s (a restated model of that family) or, without one, the restated model's at ``seed`` with random
    LayerNorms and biases."""
    import importlib

    import torch
    from safetensors.torch import save_file

    model_type, module, config_cls, model_cls, names = HUB_CODE[family]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mod = importlib.import_module(module)
    if model is not None:
        cfg = model.config
    else:
        cfg = getattr(mod, config_cls)(**(config_kw or {}))
        torch.manual_seed(seed)
        model = getattr(mod, model_cls)(cfg).eval()
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.endswith("bias") or p.dim() == 1:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if n.endswith("weight") else 0.0))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    d = {k: v for k, v in cfg.to_dict().items() if k not in ("transformers_version", "model_type", "architectures")}
    for ours, hub in names.items():
        d[hub] = d.pop(ours)
    d.update(model_type=model_type, architectures=["HubModel"],
             auto_map={"AutoConfig": "configuration_hub.HubConfig", "AutoModel": "modeling_hub.HubModel"})
    (folder / "config.json").write_text(json.dumps(d, indent=2))
    renamed = {hub: ours for ours, hub in names.items()}
    (folder / "configuration_hub.py").write_text(textwrap.dedent(_CONFIGURATION).format(
        module=module, config=config_cls, model_type=model_type, renamed=renamed, names=names))
    (folder / "modeling_hub.py").write_text(_MODELING.format(module=module, model=model_cls))
    return folder
