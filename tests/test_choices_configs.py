"""Every public config refuses bad input alike and is a value (``choices.config``, ``choices.FrozenMap``).

The configs are found from the public API (``deploytool.__all__`` and the ``__all__`` of the subpackages
that hold configs), so a config added there is covered without touching this file: it only needs an entry
in ``MINIMAL`` when it cannot be built without arguments.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import pickle
from pathlib import Path

import pytest

import deploytool as dt
from deploytool.errors import ConfigError

PUBLIC = ["deploytool", "deploytool.passes", "deploytool.train.config", "deploytool.train.distill",
          "deploytool.bench", "deploytool.export", "deploytool.recipes", "deploytool.profiles", "deploytool.report"]
# not the library: the test-model builders (transformers' own configs) and the command line
NOT_SEARCHED = ("deploytool.testing", "deploytool.cli", "deploytool.__main__")


def _modules() -> list[str]:
    """The public packages, then every module of the library: a config public only in its own module's ``__all__``
    (``deploytool.fit.FitConfig``, ``deploytool.qnn.check.QnnCheckConfig``) is found too."""
    import pkgutil

    names = list(PUBLIC)
    for m in pkgutil.walk_packages(dt.__path__, "deploytool."):
        if not m.name.startswith(NOT_SEARCHED) and not m.name.rsplit(".", 1)[-1].startswith("_"):
            names.append(m.name)
    return names


def _public_configs() -> list[type]:
    found: dict[str, type] = {}
    for name in _modules():
        mod = importlib.import_module(name)
        for attr in getattr(mod, "__all__", []):
            obj = getattr(mod, attr)
            if attr.endswith("Config") and isinstance(obj, type) and dataclasses.is_dataclass(obj):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    from deploytool.passes import pass_table

    for entry in pass_table().values():  # every pass's config, public through transform() even when not in __all__
        found[f"{entry.config.__module__}.{entry.config.__qualname__}"] = entry.config
    return [found[k] for k in sorted(found)]


CONFIGS = _public_configs()

# the arguments a config needs to be built at all (a required field, one of two exclusive fields); "{tmp}" is a
# folder holding an empty bench results file b.json and a one-node ONNX model m.onnx; a callable is called
# (objects: a device profile, a QNN target)
def _profile(name):
    return lambda: __import__("deploytool.profiles", fromlist=["load_profile"]).load_profile(name)


def _target():
    from deploytool.qnn.target import load_target

    return load_target("snapdragon-sm8650")


MINIMAL = {
    "BenchConfig": {"models": ("a.onnx",)},
    "ExportConfig": {"model": "minilm"},
    "HeadPruneConfig": {"heads": {0: [0, 1]}},
    "FFNPruneConfig": {"keep": 0.5},
    "ReportConfig": {"results": ("{tmp}/b.json",), "out_dir": "{tmp}/out"},
    "ImportanceConfig": {"model": "m", "output": "o.json"},
    "EvalConfig": {"model": "m"},
    "FitConfig": {"model": "{tmp}/m.onnx", "profile": "x86-host", "output": "{tmp}/o.onnx"},
    "BundleConfig": {"profile": _profile("snapdragon-sm8650")},
    "QnnCheckConfig": {"target": _target},
    "QnnCompileConfig": {"target": _target},
    "VerifyConfig": {"models": ("{tmp}/m.onnx",), "cpus": ("max",)},
    "RemoteConfig": {"hosts": ("pi@raspberrypi",)},
}


def _minimal(cls: type, tmp: Path) -> dict:
    import onnx
    from onnx import TensorProto, helper

    (tmp / "b.json").write_text("{}")
    if not (tmp / "m.onnx").exists():
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
        onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])),
                  str(tmp / "m.onnx"))
    out = {}
    for k, v in MINIMAL.get(cls.__name__, {}).items():
        if callable(v):
            v = v()
        elif isinstance(v, tuple) and "{tmp}" in str(v):
            v = tuple(x.format(tmp=tmp) for x in v)
        elif isinstance(v, str) and "{tmp}" in v:
            v = v.format(tmp=tmp)
        out[k] = v
    return out


def _fields():
    return [(c, f.name) for c in CONFIGS for f in dataclasses.fields(c) if f.init]


def _numeric_fields():
    """(config, field) for every field whose default is a number or nothing: -10**9 is out of range or of
    the wrong type for each."""
    out = []
    for c in CONFIGS:
        for f in dataclasses.fields(c):
            d = f.default
            if f.init and (d is None or (isinstance(d, (int, float)) and not isinstance(d, bool))):
                out.append((c, f.name))
    return out


def _named(message: str, field: str) -> bool:
    """The message is about ``field``: it starts ``field:`` or ``a/field:`` (a rule across fields names them all)."""
    key = message.split(":")[0]
    return field in key.split("/") or message.startswith(field)


def _id(x):
    return x.__name__ if isinstance(x, type) else str(x)


def test_the_public_configs_are_found():
    names = {c.__name__ for c in CONFIGS}
    assert {"SliceConfig", "HeadPruneConfig", "PackConfig", "RepackConfig", "ExportConfig", "BenchConfig",
            "ReportConfig", "DataConfig", "TrainConfig", "DynaBertConfig", "QATConfig", "EvalConfig",
            "DistillConfig", "ImportanceConfig", "FitConfig", "InspectConfig", "BundleConfig", "QnnCheckConfig",
            "QnnCompileConfig", "QnnQuantConfig", "VerifyConfig", "RemoteConfig"} <= names


@pytest.mark.parametrize("cls", CONFIGS, ids=_id)
def test_unknown_keyword_is_a_config_error_naming_it(cls, tmp_path):
    base = _minimal(cls, tmp_path)
    cls(**base)  # builds (else add it to MINIMAL)
    with pytest.raises(ConfigError, match=r"^bogus: unknown key \((allowed|did you mean)"):
        cls(**base, bogus=1)
    with pytest.raises(ConfigError, match="unknown key"):  # replace() goes through the same check
        dataclasses.replace(cls(**base), bogus=1)


@pytest.mark.parametrize(("cls", "field"), _fields(), ids=_id)
def test_wrong_type_is_a_config_error_naming_the_field(cls, field, tmp_path):
    with pytest.raises(ConfigError) as e:
        cls(**{**_minimal(cls, tmp_path), field: object()})
    assert _named(str(e.value), field), str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(("cls", "field"), _numeric_fields(), ids=_id)
def test_out_of_range_is_a_config_error_naming_the_field(cls, field, tmp_path):
    with pytest.raises(ConfigError) as e:
        cls(**{**_minimal(cls, tmp_path), field: -10**9})
    assert _named(str(e.value), field), str(e.value)


@pytest.mark.parametrize("cls", CONFIGS, ids=_id)
def test_configs_are_values(cls, tmp_path):
    """Equal inputs make equal, hashable, immutable configs that survive copy and pickle, with a one-line repr."""
    base = _minimal(cls, tmp_path)
    a, b = cls(**base), cls(**copy.deepcopy(base))
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    first = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(a, first, getattr(a, first))
    assert copy.deepcopy(a) == a and pickle.loads(pickle.dumps(a)) == a
    r = repr(a)
    assert r.startswith(f"{cls.__name__}(") and "\n" not in r
    assert all(f"{f.name}=" in r for f in dataclasses.fields(cls) if f.repr)


def test_a_mapping_config_is_hashable_immutable_and_round_trips():
    given = {0: [0, 1], 2: [3]}
    c = dt.HeadPruneConfig(heads=given)
    assert given == {0: [0, 1], 2: [3]}  # the caller's dict is untouched
    assert c == dt.HeadPruneConfig(heads={0: (0, 1), 2: (3,)})
    assert hash(c) == hash(dt.HeadPruneConfig(heads={2: [3], 0: [0, 1]}))
    assert c != dt.HeadPruneConfig(heads={0: [0]})
    assert eval(repr(c), {"HeadPruneConfig": dt.HeadPruneConfig}) == c  # noqa: S307 - our own repr
    assert c.heads == {0: (0, 1), 2: (3,)} and json.dumps(c.heads) == '{"0": [0, 1], "2": [3]}'
    with pytest.raises(TypeError, match="immutable"):
        c.heads[0] = (1,)
    with pytest.raises(TypeError, match="immutable"):
        c.heads.update({5: (0,)})
    assert c.heads == {0: (0, 1), 2: (3,)}
    f = dt.FFNPruneConfig(neurons={1: [4, 5]})
    assert hash(f) == hash(dt.FFNPruneConfig(neurons={1: (4, 5)}))
    with pytest.raises(TypeError, match="immutable"):
        f.neurons.pop(1)


def test_path_fields_hold_paths_so_equal_configs_compare_equal():
    from deploytool.train.config import EvalConfig, ImportanceConfig

    assert ImportanceConfig(model="m", output="o.json") == ImportanceConfig(model=Path("m"), output=Path("o.json"))
    assert isinstance(EvalConfig(model="m", tokenizer="t").tokenizer, Path)


def test_the_plain_configs_refuse_what_the_schema_configs_refuse_in_the_same_words():
    from deploytool.train.config import DataConfig, DynaBertConfig, TrainConfig

    with pytest.raises(ConfigError, match=r"^max_lenght: unknown key \(did you mean 'max_length'\?\)$"):
        DataConfig(max_lenght=8)
    with pytest.raises(ConfigError, match=r"^max_length: expected an integer, got str '64'$"):
        DataConfig(max_length="64")
    with pytest.raises(ConfigError, match=r"^lr: expected a finite number, got nan$"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(ConfigError, match=r"^weight_decay: must be in \[0, 1\]"):
        TrainConfig(weight_decay=-0.1)
    with pytest.raises(ConfigError, match=r"^model: required key is missing$"):
        dt.ExportConfig()
    with pytest.raises(ConfigError, match=r"^model: given twice"):
        dt.ExportConfig("a", model="b")
    assert DynaBertConfig(widths="0.5,1").widths == (0.5, 1.0)  # the CLI's spelling, not its characters
    with pytest.raises(ConfigError, match=r"^widths: item 0: expected a number"):
        DynaBertConfig(widths=["a"])


def test_a_type_error_reads_with_the_right_article():
    from deploytool.choices import a_type
    from deploytool.passes.quantize_int8 import quantize_int8_file

    assert [a_type(n) for n in ("ExportConfig", "Int8Config", "FFNPruneConfig", "QnnTarget", "BenchConfig",
                                "SessionSpec", "HTPConfig")] == \
        ["an ExportConfig", "an Int8Config", "an FFNPruneConfig", "a QnnTarget", "a BenchConfig", "a SessionSpec",
         "an HTPConfig"]
    with pytest.raises(ConfigError, match=r"^export_model: config must be an ExportConfig, got str$"):
        dt.export_model("minilm", "m.onnx")
    with pytest.raises(ConfigError, match=r"config must be an Int8Config, got SliceConfig$"):
        quantize_int8_file("m.onnx", "o.onnx", dt.SliceConfig(width=0.5))


def _number_fields():
    """(config, field, default) for every field whose default is a number (not a bool)."""
    return [(c, f.name, f.default) for c in CONFIGS for f in dataclasses.fields(c)
            if f.init and isinstance(f.default, (int, float)) and not isinstance(f.default, bool)]


@pytest.mark.parametrize(("cls", "field", "default"), _number_fields(), ids=_id)
def test_a_numpy_number_is_the_python_number(cls, field, default, tmp_path):
    """A number read from numpy (``np.int64`` from an argsort or an array of lengths, ``np.float32`` from a sweep
    grid) is the same number: the schema configs refused ``SliceConfig(width=np.float32(0.5))`` ("expected a
    number in (0, 1], got float32 np.float32(0.5)") and the plain ones ``InspectConfig(seq_len=np.int64(16))``
    ("must be an integer in [1, 65536], got np.int64(16)") while taking 0.5 and 16. The config holds the Python
    number (JSON writes it; equal configs compare equal)."""
    import numpy as np

    base = _minimal(cls, tmp_path)
    value = (np.int64(default) if isinstance(default, int)
             else np.float32(default) if float(np.float32(default)) == default else np.float64(default))
    got = cls(**{**base, field: value})
    assert got == cls(**base)
    assert type(getattr(got, field)) is type(getattr(cls(**base), field)), type(getattr(got, field))
    json.dumps(dataclasses.asdict(got), default=str)


def _number_list_fields():
    """(config, field, default) for every field whose default is a non-empty list of numbers (not bools)."""
    return [(c, f.name, f.default) for c in CONFIGS for f in dataclasses.fields(c)
            if f.init and isinstance(f.default, (tuple, list)) and f.default
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in f.default)]


def test_the_number_list_fields_are_found():
    found = {(c.__name__, name) for c, name, _ in _number_list_fields()}
    assert {("BenchConfig", "seq_lens"), ("DynaBertConfig", "widths"), ("DynaBertConfig", "depths"),
            ("FitConfig", "widths"), ("FitConfig", "depths")} <= found, found


@pytest.mark.parametrize(("cls", "field", "default"), _number_list_fields(), ids=_id)
def test_a_numpy_array_is_the_list_of_python_numbers(cls, field, default, tmp_path):
    """``BenchConfig(seq_lens=np.array([8, 128]))`` was refused ("seq_lens: expected a list, got ndarray array([8,
    128])"), and FitConfig's widths likewise, while np.int64(8) and np.float32(0.5) one by one were taken (the test
    above). A 1-D array is the list it holds: the config equals the one built with the default and holds Python
    numbers; an array of floats where the items are integers (as np.float64(8.0) alone), of more than one dimension,
    or of bools is refused in one line naming the field."""
    import numpy as np

    base = _minimal(cls, tmp_path)
    ints = all(isinstance(x, int) for x in default)
    got = cls(**{**base, field: np.array(default, dtype=np.int64 if ints else np.float32)})
    want = cls(**base)
    assert got == want
    assert [type(x) for x in getattr(got, field)] == [type(x) for x in getattr(want, field)]
    json.dumps(dataclasses.asdict(got), default=str)
    what = "integers" if ints else "numbers"
    flat = np.array(default, dtype=np.int64 if ints else np.float64)
    with pytest.raises(ConfigError) as e:
        cls(**{**base, field: flat.reshape(1, -1)})
    assert str(e.value) == f"{field}: expected a list of {what} (a 1-D array), got a 2-D array of shape (1, {len(default)})"
    with pytest.raises(ConfigError) as e:
        cls(**{**base, field: np.ones(len(default), dtype=bool)})
    assert str(e.value) == f"{field}: expected a list of {what}, got an array of bool {[True] * len(default)}"
    if ints:
        with pytest.raises(ConfigError) as e:
            cls(**{**base, field: flat.astype(np.float64)})
        assert str(e.value) == (f"{field}: expected a list of integers, got an array of float64 "
                                f"{[float(x) for x in default]}")
