"""The conformance matrix's export cache: an export other tools wrote, kept by what made it and copied back."""

from __future__ import annotations

import pytest

from deploytool import settings
from deploytool.testing import conformance as C

pytest.importorskip("torch")


def test_an_export_is_written_once_and_copied_back_byte_for_byte(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.TEST_EXPORTS, str(tmp_path / "cache"))
    case = C.MODEL_BY_NAME["bert"]
    first = C.export(case, "torchscript-17", tmp_path / "a")
    kept = list((tmp_path / "cache").glob("*.onnx"))
    assert len(kept) == 1 and kept[0].read_bytes() == first.read_bytes()

    def no_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr(C, "_export", no_export)
    again = C.export(case, "torchscript-17", tmp_path / "b")
    assert again == tmp_path / "b" / first.name and again.read_bytes() == first.read_bytes()
    # another exporter, another case, another library version: another key, so an export of its own
    with pytest.raises(AssertionError, match="exported again"):
        C.export(case, "torchscript-14", tmp_path / "c")
    with pytest.raises(AssertionError, match="exported again"):
        C.export(C.MODEL_BY_NAME["roberta"], "torchscript-17", tmp_path / "d")
    key = C.export_key(case, "torchscript-17")
    monkeypatch.setattr(C, "_EXPORT_LIBRARIES", C._EXPORT_LIBRARIES + ("pytest",))
    assert C.export_key(case, "torchscript-17") != key


def test_no_cache_when_switched_off_and_none_of_an_export_with_external_data(tmp_path, monkeypatch):
    case = C.MODEL_BY_NAME["bert"]
    monkeypatch.setenv(settings.TEST_EXPORTS, "off")
    assert settings.conformance_export_cache() is None
    C.export(case, "torchscript-17", tmp_path / "a")  # nothing kept anywhere: no folder to look in
    monkeypatch.setenv(settings.TEST_EXPORTS, str(tmp_path / "cache"))
    path = C.export(case, "torchscript-17-external", tmp_path / "b")
    assert (path.parent / f"{path.name}.data").is_file()
    assert not list((tmp_path / "cache").glob("*.onnx"))  # a model and its data file: not one file to copy back


def test_the_default_folder_is_under_the_cache_home():
    assert settings.conformance_export_cache({"HOME": "/h"}) == settings.cache_home({"HOME": "/h"}) / "deploytool" / \
        "test-exports"
    assert settings.conformance_export_cache({"DEPLOYTOOL_TEST_EXPORTS": "/x", "HOME": "/h"}).as_posix() == "/x"
