"""A toy text-classification task, tokenizer and tiny classifier folder for training tests.

Texts are random filler words with a few "cue" words; the label says which cue set appears more
often, so a tiny encoder learns it in seconds. Nothing downloads: the WordPiece tokenizer is built
from a written vocab file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = SPECIALS + [f"w{i}" for i in range(95)]  # 100 tokens, matching tiny_config's vocab
POS = [f"w{i}" for i in range(0, 8)]
NEG = [f"w{i}" for i in range(8, 16)]
FILLER = [f"w{i}" for i in range(16, 95)]


def toy_tokenizer(folder: str | Path):
    """A BertTokenizerFast over VOCAB, saved in ``folder`` (returned)."""
    from transformers import BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True, model_max_length=128)
    tok.save_pretrained(folder)
    return tok


def toy_rows(n: int, seed: int = 0, length: tuple[int, int] = (6, 14)) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = list(rng.choice(FILLER, size=int(rng.integers(*length))))
        cues = POS if label == "pos" else NEG
        for _ in range(int(rng.integers(1, 3))):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(cues)))
        if rng.random() < 0.5:  # one distractor from the other side
            other = NEG if label == "pos" else POS
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(other)))
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(cues)))
        rows.append((" ".join(words), label))
    return rows


def toy_csv(path: str | Path, n: int = 400, seed: int = 0) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(toy_rows(n, seed))
    return path


def tiny_classifier_folder(folder: str | Path, *, family: str = "bert", seed: int = 0, **kw) -> Path:
    """A random tiny sequence classifier + toy tokenizer saved as a HF folder (safetensors)."""
    from deploytool.testing.tiny import tiny_model

    folder = Path(folder)
    model = tiny_model(family, task="sequence-classification", seed=seed, **kw)
    model.save_pretrained(folder, safe_serialization=True)
    toy_tokenizer(folder)
    return folder
