"""Fixtures of the recipe tests."""

from __future__ import annotations

from pathlib import Path

import pytest


def classifier_workspace(root: Path, rows: int) -> Path:
    """``root`` with ``model/`` (a tiny BERT classifier and its toy tokenizer) and ``toy.csv`` (``rows`` reviews)."""
    from deploytool.testing.toy_text import tiny_classifier_folder, toy_csv

    tiny_classifier_folder(root / "model", layers=2, hidden=32, heads=4, ffn=64)
    toy_csv(root / "toy.csv", n=rows)
    return root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, request):
    """A classifier workspace of the module's ``WORKSPACE_ROWS`` reviews (240 by default)."""
    return classifier_workspace(tmp_path_factory.mktemp("recipe"), getattr(request.module, "WORKSPACE_ROWS", 240))
