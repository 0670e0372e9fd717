"""Load a Hugging Face folder as a PyTorch encoder, and read its architecture.

Models load offline from safetensors (``pytorch_model.bin`` only through torch's weights_only
loader) with eager attention: ORT's BERT optimizer fuses the attention subgraph that eager attention
exports to, not the SDPA one (FACTS.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from deploytool.errors import DeployError, InputFileError
from deploytool.export.config import Task
from deploytool.models import weight_files
from deploytool.quiet_logs import held_level, held_stdout

logger = logging.getLogger(__name__)

__all__ = ["load_hf_model", "weights_only_refusal", "architecture", "check_encoder_folder", "input_names", "max_sequence_length",
           "own_code"]


# the modules a task's head adds to the encoder: a checkpoint without them is the encoder alone (its head is made
# at random, to be fine-tuned); any other weight missing means the folder is not the architecture its config names
_HEAD_MODULES = {Task.FEATURE_EXTRACTION: frozenset({"pooler"}),
                 Task.SEQUENCE_CLASSIFICATION: frozenset({"pooler", "classifier", "pre_classifier", "sequence_summary",
                                                          "score", "head"})}


def load_hf_model(path: str | os.PathLike, task: Task | str = Task.FEATURE_EXTRACTION, *, seed: int = 0,
                  trust_remote_code: bool = False):
    """A transformers model from a local folder, in eval mode, eager attention, no network.

    For sequence-classification of a checkpoint without a classifier the head is initialised from
    ``seed`` (deterministic), as transformers does with a warning. A folder whose ``config.json`` maps the class
    to its own code (``auto_map``: jina-embeddings-v2, nomic-embed-text, gte-*-v1.5) loads only with
    ``trust_remote_code`` (that code runs here); without it, a one-line DeployError, never transformers' built-in
    class of the same ``model_type`` with the weights it lacks made up (jina-embeddings-v2 says "bert").
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
    own_code(folder, auto.__name__, trust_remote_code)
    check_encoder_folder(folder)
    if task is Task.SEQUENCE_CLASSIFICATION:
        _check_not_another_head(folder)
    encoder = _encoder_class(folder, task, trust_remote_code)
    if encoder is not None:
        auto = encoder
    # transformers prints "Some weights ... newly initialized" through its logger and stderr. Those weights come
    # from ``seed``, drawn from a generator of their own: the caller's torch random state is left as it was
    try:
        with held_level("transformers", logging.ERROR), torch.random.fork_rng(devices=[]), held_stdout(), \
                _no_progress_bars(tr):
            torch.manual_seed(seed)
            model, info = auto.from_pretrained(str(folder), local_files_only=True, attn_implementation="eager",
                                               use_safetensors=use_safetensors, weights_only=True,
                                               torch_dtype=torch.float32, output_loading_info=True,
                                               trust_remote_code=trust_remote_code)  # False: never a prompt
    except Exception as e:
        refused = weights_only_refusal(folder, e)
        if refused is not None:
            raise refused from e
        labels = _label_count_mismatch(folder, e) if task is Task.SEQUENCE_CLASSIFICATION else None
        if labels is not None:
            raise DeployError(f"{folder}: its config.json names {labels[0]} labels (id2label / num_labels) but its "
                              f"classifier has {labels[1]} outputs; make config.json's labels those the head was "
                              "trained with") from e
        msg = " ".join(str(e).split())[:240]
        raise DeployError(f"cannot load model from {folder} ({type(e).__name__}: {msg})") from e
    missing = sorted(info.get("missing_keys") or [])
    encoder_missing = [k for k in missing if not set(k.split(".")) & _HEAD_MODULES[task]]
    if encoder_missing:
        raise DeployError(f"{folder}: its weights have nothing for {len(encoder_missing)} of the "
                          f"{type(model).__name__} encoder's tensors ({', '.join(encoder_missing[:3])}"
                          f"{', ...' if len(encoder_missing) > 3 else ''}): the checkpoint is not the architecture "
                          f"its config.json names ('{model.config.model_type}'); nothing exported")
    if task is Task.FEATURE_EXTRACTION and missing and all("pooler" in k.split(".") for k in missing):
        # a question-answering or token-classification checkpoint has no pooler: last_hidden_state, what the export
        # keeps, does not read it ("its outputs mean nothing" was said of every such export)
        logger.info("%s has no pooler weights (initialised at random, seed %d): not in the feature-extraction "
                    "export, whose output last_hidden_state does not read them", folder, seed)
    elif missing:  # we silenced transformers' own warning above: say it once, plainly
        logger.warning("%s has no weights for %s: initialised at random (seed %d); its outputs mean nothing "
                       "until fine-tuned (deploytool train)", folder, ", ".join(missing[:4])
                       + (f" and {len(missing) - 4} more" if len(missing) > 4 else ""), seed)
    return model.eval()


@contextlib.contextmanager
def _no_progress_bars(tr):
    """transformers' progress bars off while the block runs ("Loading checkpoint shards" on stderr for a sharded
    checkpoint: the lines before a one-line error, and noise before the export's own lines); back on after if
    they were on."""
    bars = tr.utils.logging.is_progress_bar_enabled()
    tr.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            tr.utils.logging.enable_progress_bar()


def config_json(folder: str | os.PathLike) -> dict | None:
    """A model folder's config.json read as JSON, nothing loaded or run; None when it is missing, unreadable or not
    an object (from_pretrained then says what is wrong with it)."""
    import json

    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def checkpoint_dtype(folder: str | os.PathLike) -> str | None:
    """The weight type a model folder's config.json records (``torch_dtype``, or ``dtype`` in newer
    transformers), e.g. ``"bfloat16"``; None when it says none or cannot be read."""
    config = config_json(folder)
    value = (config.get("torch_dtype") or config.get("dtype")) if config is not None else None
    return value.removeprefix("torch.") if isinstance(value, str) else None


def _label_count_mismatch(folder: Path, error: BaseException) -> tuple[int, int] | None:
    """(labels config.json names, the checkpoint classifier's outputs) when ``error`` is torch's size mismatch of the
    classifier's last layer against the label count of config.json (transformers says "size mismatch for bias"
    of a "Linear", naming neither the labels nor the file); None for any other failure."""
    import re

    m = re.search(r"size mismatch for \S+: copying a param with shape torch\.Size\(\[(\d+)[\],].*?"
                  r"the shape in current model is torch\.Size\(\[(\d+)[\],]", str(error))
    if m is None:
        return None
    config = config_json(folder)
    if config is None:
        return None
    names = config.get("id2label")
    named = len(names) if isinstance(names, dict) and names else config.get("num_labels")
    checkpoint, model = int(m.group(1)), int(m.group(2))
    return (model, checkpoint) if named == model and checkpoint != model else None


# heads of another task whose checkpoint ``AutoModelForSequenceClassification`` takes without a word: a token
# classifier's ``classifier`` (labels x hidden) has the sequence classifier's shape and was loaded as one, a
# question-answering head was replaced by a random classifier, a multiple-choice one failed with a size mismatch
_OTHER_HEADS = {"ForQuestionAnswering": "question answering (start and end logits per token)",
                "ForQuestionAnsweringSimple": "question answering (start and end logits per token)",
                "ForTokenClassification": "token classification (one label per token)",
                "ForMultipleChoice": "multiple choice (one score per choice of several sequences)"}


def _check_not_another_head(folder: Path) -> None:
    """A one-line DeployError when ``folder``'s config.json names a model with another task's head (read as
    JSON, nothing loaded): its sequence-classification export would not be the checkpoint's model."""
    config = config_json(folder)  # None: from_pretrained says what is wrong with the file
    names = config.get("architectures") if config is not None else None
    if not isinstance(names, list):
        return
    for name in (n for n in names if isinstance(n, str)):
        head = next((what for suffix, what in _OTHER_HEADS.items() if name.endswith(suffix)), None)
        if head is not None:
            raise DeployError(f"{folder} is a {name}, a {head} head; deploytool exports sequence classifiers "
                              "(one label set per text) and encoders: export --task feature-extraction exports its "
                              "encoder (last_hidden_state, the head left out)")


def weights_only_refusal(folder: str | os.PathLike, error: BaseException) -> InputFileError | None:
    """The one-line error for a ``pytorch_model.bin`` that torch's ``weights_only=True`` loading refused (it pickles
    more than tensors: a class of its own, a function), found in ``error``'s chain; None for any other failure.

    transformers wraps the refusal in "Unable to load weights ... please set from_tf=True", which sends the user
    after a TensorFlow checkpoint that does not exist."""
    import pickle
    import re

    chain, seen = [], set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    refusals = [x for x in chain if isinstance(x, pickle.UnpicklingError) or "Weights only load failed" in str(x)]
    if not refusals:
        return None
    names = [f.name for f in weight_files(Path(folder)) if f.suffix == ".bin"] or ["pytorch_model.bin"]
    # a sharded checkpoint: the shard transformers names ("Unable to load weights from ... file for '<path>'"),
    # not a pytorch_model.bin the folder does not have
    shards = [Path(m).name for x in chain for m in re.findall(r"'([^']+\.bin)'", str(x))
              if (Path(folder) / Path(m).name).is_file()]
    names = shards or names
    text = " ".join(" ".join(str(x).split()) for x in refusals)
    found = re.search(r"(?:Unsupported global: )?GLOBAL ([\w.]+) was not an allowed global", text)
    why = (f"it pickles {found.group(1)}, not only tensors" if found
           else re.sub(r"\x1b\[[0-9;]*m", "", " ".join(str(refusals[-1]).split()))[:160])
    return InputFileError(f"{Path(folder) / names[0]}: refused by torch's weights-only loading ({why}); convert it to "
                          "model.safetensors (where you trust the file: load it with torch.load(weights_only=False) "
                          "and save it with save_pretrained(safe_serialization=True))")


def own_code(folder: Path, auto_class: str, trust: bool,
             remedy: str = "pass --trust-remote-code to run that code") -> None:
    """A one-line DeployError when ``folder``'s ``config.json`` maps ``auto_class`` (AutoModel, ...) to the folder's
    own code and ``trust`` is False (``remedy`` says what to do), or when trusted code has no such class; the file
    is read as JSON, nothing run."""
    config = config_json(folder)  # None: from_pretrained says what is wrong with the file
    auto_map = config.get("auto_map") if config is not None else None
    if not isinstance(auto_map, dict):
        return
    # the model's own classes only (a tokenizer of its own code, AutoTokenizer, leaves the model transformers')
    auto_map = {k: v for k, v in auto_map.items() if k == "AutoConfig" or k.startswith("AutoModel")}
    if not auto_map:
        return
    entry = auto_map.get(auto_class)
    kind = config.get("model_type", "?")
    if trust:
        if entry is None and auto_class != "AutoModel":
            raise DeployError(f"{folder}: its own code (config.json auto_map: {', '.join(sorted(auto_map))}) has no "
                              f"{auto_class}; export --task feature-extraction")
        for ref in (v for v in (auto_map.get("AutoConfig"), entry) if isinstance(v, str)):
            code = ref.rsplit(".", 1)[0].replace(".", "/") + ".py"
            # "repo--module.Class" is code of another hub repository, which transformers looks up in its cache
            if "--" not in ref and not (folder / code).is_file():
                raise DeployError(f"{folder}: config.json's auto_map names {code} ({ref}), which is not in the folder")
        return
    from transformers import CONFIG_MAPPING

    code = entry if isinstance(entry, str) else next((v for v in auto_map.values() if isinstance(v, str)), "?")
    builtin = (f"not transformers' own '{kind}' class, which would make up the weights it does not know"
               if kind in CONFIG_MAPPING else f"transformers has no '{kind}'")
    raise DeployError(f"{folder}: config.json's auto_map loads it with the folder's own code ({code}; {builtin}); "
                      f"{remedy} (it executes {code.split('.')[0]}.py from the folder)")


def check_encoder_folder(folder: str | os.PathLike) -> None:
    """A one-line DeployError for a model folder deploytool cannot take, read from its config.json alone (nothing
    loaded, no code run): a ``model_type`` transformers does not know, with no code of the folder's own
    (``auto_map``: checked by :func:`own_code`), said in full rather than transformers' message cut short; or a
    decoder-only language model (GPT-2, Llama, ...: transformers has a causal LM class for its ``model_type`` and no
    masked LM one; BERT and its family have both), which no encoder pass applies to."""
    import transformers as tr
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    folder = Path(folder)
    config = config_json(folder)
    if config is None:
        return  # from_pretrained says what is wrong with the file
    kind = config.get("model_type")
    if not isinstance(config.get("auto_map"), dict):
        if kind is None:
            # transformers then guesses the family from the folder's path ("bert-base-uncased/"), as old checkpoints need
            kind = next((k for k in sorted(CONFIG_MAPPING.keys(), key=len, reverse=True) if k in str(folder)), None)
            if kind is None:
                raise DeployError(f"{folder}/config.json has no model_type, and the folder's path names no model "
                                  "family transformers would take it for")
        if not isinstance(kind, str) or kind not in CONFIG_MAPPING:
            from deploytool.choices import did_you_mean

            raise DeployError(f"{folder}/config.json: model_type {kind!r} is not one transformers {tr.__version__} "
                              f"knows{did_you_mean(str(kind), list(CONFIG_MAPPING.keys()))}, and the folder brings "
                              "no code of its own (config.json auto_map)")
    if config.get("is_encoder_decoder") or kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES \
            or kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return
    raise DeployError(f"{folder} is a decoder-only language model ({kind}: causal attention, generates text); "
                      "deploytool exports and trains encoders (BERT and its family; T5's encoder)")


def _encoder_class(folder: Path, task: Task, trust_remote_code: bool = False):
    """transformers' encoder-only class of an encoder-decoder folder (T5, mT5, UMT5: ``T5EncoderModel`` ...):
    feature extraction exports its encoder (a full checkpoint's decoder weights are left unread). None for an
    encoder model; a one-line DeployError where there is no encoder-only class, or for a classifier (T5's
    sequence classifier reads its decoder)."""
    import transformers as tr

    try:
        config = tr.AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust_remote_code)
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
    family = str(c.model_type)
    if getattr(c, "auto_map", None):  # its own code (jina-embeddings-v2 says "bert"): named by its module paths
        from deploytool.graph.finder import family_of_names

        family = family_of_names(n for n, _ in model.named_parameters()) or family
    hidden = int(_cfg(c, "hidden_size", "dim", "n_embd"))  # n_embd ...: GPT-2-style names (NomicBERT's config)
    heads = int(_cfg(c, "num_attention_heads", "n_heads", "n_head"))
    # T5's d_kv: its heads need not tile d_model (t5-11b: 128 heads x 128 over 1024); MobileBERT's attention works
    # in its bottleneck (true_hidden_size), not the hidden size between layers
    head_size = int(_cfg(c, "d_kv", default=int(_cfg(c, "true_hidden_size", default=hidden)) // heads))
    layers = int(_cfg(c, "num_hidden_layers", "n_layers", "n_layer"))
    ffn = int(_cfg(c, "intermediate_size", "hidden_dim", "d_ff", "n_inner", default=4 * hidden))
    if family == "convbert":  # head_ratio of the heads are span-based convolutions, the rest self-attention
        heads = max(1, heads // int(getattr(c, "head_ratio", 1) or 1))
    # ALBERT runs inner_group_num layers per step (the graph has that many times num_hidden_layers); MobileBERT
    # stacks num_feedforward_networks FFNs in a layer, whose neurons the layer's FFN width counts together
    layers *= int(getattr(c, "inner_group_num", 1) or 1) if family == "albert" else 1
    ffn *= int(getattr(c, "num_feedforward_networks", 1) or 1) if family == "mobilebert" else 1
    return {
        "family": family,
        "num_layers": layers,
        "num_heads": heads,
        "head_size": head_size,
        "hidden_size": hidden,
        "ffn_size": ffn,
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
    # RoBERTa-style embeddings count positions from padding_idx + 1 (RoBERTa, XLM-R, CamemBERT, MPNet,
    # data2vec-text, ...): read off the module that makes the position ids, not a list of families (MPNet was
    # recorded 2 positions too long and crashed validation), and its padding index as it is (a pad id of 0 was 1)
    offset = next((int(pe.padding_idx) + 1 for m in model.modules()
                   if (pe := getattr(m, "position_embeddings", None)) is not None
                   and isinstance(getattr(pe, "padding_idx", None), int)), None)
    if offset is None and c.model_type in ("roberta", "xlm-roberta", "camembert", "longformer"):
        offset = (1 if c.pad_token_id is None else int(c.pad_token_id)) + 1
    return n - (offset or 0)


def trace_length(model, wanted: int) -> int:
    """The sequence length to trace ``model`` at: ``wanted``, or the model's own limit where its position table is
    shorter (an exporter tracing past it fails with a size mismatch), and at least 2."""
    return max(2, min(int(wanted), max_sequence_length(model)))
