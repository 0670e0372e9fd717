"""Load a Hugging Face folder as a PyTorch encoder, and read its architecture.

Models load offline from safetensors (``pytorch_model.bin`` only through torch's weights_only
loader) with eager attention: ORT's BERT optimizer fuses the attention subgraph that eager attention
exports to, not the SDPA one (FACTS.md).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

from deploytool.errors import DeployError
from deploytool.export.config import Task
from deploytool.models import weight_files

logger = logging.getLogger(__name__)

__all__ = ["load_hf_model", "architecture", "input_names", "max_sequence_length"]


def load_hf_model(path: str | os.PathLike, task: Task | str = Task.FEATURE_EXTRACTION, *, seed: int = 0):
    """A transformers model from a local folder, in eval mode, eager attention, no network.

    For sequence-classification of a checkpoint without a classifier the head is initialised from
    ``seed`` (deterministic), as transformers does with a warning.
    """
    import torch
    import transformers as tr

    task = Task(task)
    folder = Path(path)
    files = weight_files(folder)
    if not files:
        raise DeployError(f"model folder {folder} has no weights (model.safetensors or pytorch_model.bin)")
    use_safetensors = files[0].name.startswith("model.safetensors")
    auto = tr.AutoModel if task is Task.FEATURE_EXTRACTION else tr.AutoModelForSequenceClassification
    encoder = _encoder_class(folder, task)
    if encoder is not None:
        auto = encoder
    torch.manual_seed(seed)
    # transformers prints "Some weights ... newly initialized" through its logger and stderr
    tr_level = tr.logging.get_verbosity()
    tr.logging.set_verbosity_error()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model, info = auto.from_pretrained(str(folder), local_files_only=True, attn_implementation="eager",
                                               use_safetensors=use_safetensors, weights_only=True,
                                               torch_dtype=torch.float32, output_loading_info=True)
    except Exception as e:
        msg = " ".join(str(e).split())[:240]
        raise DeployError(f"cannot load model from {folder} ({type(e).__name__}: {msg})") from e
    finally:
        tr.logging.set_verbosity(tr_level)
    missing = sorted(info.get("missing_keys") or [])
    if missing:  # we silenced transformers' own warning above: say it once, plainly
        logger.warning("%s has no weights for %s: initialised at random (seed %d); its outputs mean nothing "
                       "until fine-tuned (deploytool train)", folder, ", ".join(missing[:4])
                       + (f" and {len(missing) - 4} more" if len(missing) > 4 else ""), seed)
    return model.eval()


def _encoder_class(folder: Path, task: Task):
    """transformers' encoder-only class of an encoder-decoder folder (T5, mT5, UMT5: ``T5EncoderModel`` ...):
    feature extraction exports its encoder (a full checkpoint's decoder weights are left unread). None for an
    encoder model; a one-line DeployError where there is no encoder-only class, or for a classifier (T5's
    sequence classifier reads its decoder)."""
    import transformers as tr

    try:
        config = tr.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception:  # from_pretrained below says what is wrong with the folder
        return None
    named = [a for a in (getattr(config, "architectures", None) or []) if a.endswith("EncoderModel")]
    if not getattr(config, "is_encoder_decoder", False) and not named:  # T5EncoderModel saves it False
        return None
    kind = config.model_type
    if task is not Task.FEATURE_EXTRACTION:
        raise DeployError(f"{folder} is an encoder-decoder model ({kind}): its {task.value} head reads the decoder; "
                          "deploytool exports encoders: export --task feature-extraction (its encoder)")
    cls = next((getattr(tr, a) for a in named if hasattr(tr, a)), None) or \
        getattr(tr, type(config).__name__.replace("Config", "EncoderModel"), None)
    if cls is None:
        raise DeployError(f"{folder} is an encoder-decoder model ({kind}) and transformers has no encoder-only "
                          "class for it; deploytool exports encoders")
    return cls


def _cfg(config, *names, default=None):
    for n in names:
        v = getattr(config, n, None)
        if v is not None:
            return v
    return default


def architecture(model) -> dict[str, int | str]:
    """family, num_layers, num_heads, head_size, hidden_size, ffn_size of a transformers encoder."""
    c = model.config
    hidden = int(_cfg(c, "hidden_size", "dim"))
    heads = int(_cfg(c, "num_attention_heads", "n_heads"))
    return {
        "family": str(c.model_type),
        "num_layers": int(_cfg(c, "num_hidden_layers", "n_layers")),
        "num_heads": heads,
        # T5's d_kv: its heads need not tile d_model (t5-11b: 128 heads x 128 over 1024)
        "head_size": int(_cfg(c, "d_kv", default=hidden // heads)),
        "hidden_size": hidden,
        "ffn_size": int(_cfg(c, "intermediate_size", "hidden_dim", "d_ff")),
        "vocab_size": int(c.vocab_size),
        "max_position_embeddings": max_sequence_length(model),
    }


def input_names(model) -> list[str]:
    """The inputs the model takes: input_ids, attention_mask and token_type_ids when it has them."""
    import inspect

    params = inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in params and int(_cfg(model.config, "type_vocab_size", default=0) or 0) > 0:
        names.append("token_type_ids")
    return names


def max_sequence_length(model) -> int:
    """Longest input the position embeddings allow (RoBERTa-style models offset by pad_token_id + 1)."""
    c = model.config
    if getattr(c, "max_position_embeddings", None) is None:
        # no absolute positions (T5's relative buckets): any length runs; 512 is what T5 was trained on
        return int(getattr(c, "n_positions", None) or 512)
    n = int(c.max_position_embeddings)
    if c.model_type in ("roberta", "xlm-roberta", "camembert", "longformer"):
        n -= int(c.pad_token_id or 1) + 1
    return n
