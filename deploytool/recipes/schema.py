"""The recipe schema (version 1): a typed, validated description of a whole deployment run.

A recipe is YAML, loaded with ``yaml.safe_load`` and validated once, here. Every error names the file,
the key path and what was expected, e.g.::

    recipes/quickstart.yaml: sweep.width[2]: expected a number in (0, 1], got 1.5

Layout (all keys but ``schema_version``, ``name`` and ``model`` are optional)::

    schema_version: 1
    name: quickstart
    model: minilm                  # an embedded name, or a folder: ../hf-folder or {path: ../hf-folder}
    task: sequence-classification  # or feature-extraction
    train:                         # ordered training steps (deploytool.train)
      - finetune: {data: rotten-tomatoes, epochs: 1, max_train: 2000}
      - dynabert: {widths: [0.5, 1.0], depths: [0.75, 1.0]}
    export: {exporter: torch, opset: 17}
    passes:                        # applied to the exported model, in order, before the sweep
      - reorder: {importance: magnitude}  # (a quantize/pack here: the sweep's as-is variants take its precision;
                                          # a quantized or packed model is not sliced or converted again)
    sweep:                         # the grid every variant is built from
      width: [1.0, 0.5]
      depth: [1.0, 0.75]
      precision: [fp32, int8, ternary]
      options: {ternary: {runtime: densest}}   # each precision pass's options
    devices: [kirin990, raspberry-pi-4, x86-host]
    bench: {seq_len: [8, 128], runs: 50, warmup: 5}
    eval: {data: rotten-tomatoes, split: test, max_eval: 500}   # a file's columns: text_col, text_pair_col, label_col
    report: {title: "MiniLM on phones"}
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator
from typing_extensions import Annotated

from deploytool.choices import array_numbers, deprecated, did_you_mean, first_repeat, is_array, name_key, not_one_of
from deploytool.errors import ConfigError, not_a_file
from deploytool.validation import (Choice, ColumnName, Fraction, Integer, OneOf, Text, invalid, kind_of,
                                   label_column_problem, pair_column_problem, read_text_file, safe_load_yaml, schema, show,
                                   validate, without_extensions, yaml_error_at)
from deploytool.units import MAX_SEQ_LEN
from deploytool.variant import PRECISIONS, Precision

SCHEMA_VERSION = 1

# a recipe key is its CLI option's name with '-' -> '_' (--calib-data -> calib_data); keys renamed to follow that
# rule: old -> new, read for one more release with a deprecation line. int8's options (in passes and sweep.options):
RENAMED_KEYS = {"calib": "calib_data", "calib_samples": "calib_size"}
# eval's (deploytool eval --max-eval), bench's (deploytool bench --batch-size, --seq-len) and the ternary/binary
# training steps' (deploytool qat --embeddings/--no-embeddings)
EVAL_RENAMED_KEYS = {"max_examples": "max_eval"}
BENCH_RENAMED_KEYS = {"batch": "batch_size", "seq_lens": "seq_len"}
QAT_RENAMED_KEYS = {"quantize_embeddings": "embeddings"}


class TrainKind(str, enum.Enum):
    FINETUNE = "finetune"
    DISTILL = "distill"
    IMPORTANCE = "importance"
    DYNABERT = "dynabert"
    TERNARY = "ternary"
    BINARY = "binary"


class PassKind(str, enum.Enum):
    REORDER = "reorder"
    SLICE = "slice"
    PRUNE_HEADS = "prune-heads"
    PRUNE_FFN = "prune-ffn"
    QUANTIZE = "quantize"
    PACK = "pack"
    REPACK = "repack"


_FILE_SUFFIXES = (".csv", ".jsonl", ".json", ".tsv", ".onnx", ".yaml", ".yml")


def looks_like_file(value: str) -> bool:
    """Whether a step's option names a file (``toy.csv``, ``out/importance.json``), not a dataset's name."""
    return Path(value).suffix.lower() in _FILE_SUFFIXES or "/" in value


def _rel(value: Any, base_dir: Path | None) -> Any:
    """A file name in a recipe is relative to the recipe's folder (dataset names are left alone)."""
    if base_dir is None or not isinstance(value, str):
        return value
    p = Path(value)
    if p.is_absolute() or not looks_like_file(value):
        return value
    return str(base_dir / p)


def _rel_path(value: Any, base_dir: Path | None) -> Any:
    """An option that is always a path (a tokenizer folder), whatever its name: relative to the recipe's folder
    (``tokenizer: tok`` was read from the working directory, ``tokenizer: ./tok`` from the recipe's)."""
    if base_dir is None or not isinstance(value, str) or not value or Path(value).is_absolute():
        return value
    return str(base_dir / value)


def _base_dir(info: ValidationInfo) -> Path | None:
    return (info.context or {}).get("base_dir")


def _as_list(value: Any, numbers: str = "") -> Any:
    """A scalar stands for a one-item list; a list must not be empty. ``numbers`` (``"int"``, ``"float"``): the items
    are numbers, and a 1-D numpy array of them is the list it holds (``np.array([8, 128])``, as its numpy numbers
    one by one are taken; choices.array_numbers)."""
    if numbers and is_array(value):
        try:
            value = list(array_numbers(value, integers=numbers == "int"))
        except ValueError as e:
            raise invalid(str(e)) from None
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise invalid(f"expected a non-empty list, got {kind_of(value)}")
    return list(value)


def _renamed(params: Any, where: str, info: ValidationInfo, at: str = "",
             renamed: dict[str, str] = RENAMED_KEYS) -> Any:
    """``params`` with each old key of ``renamed`` under its new name, one deprecation line each (naming the file,
    ``where`` and the new key); the old and the new key for the same option together are refused."""
    if not isinstance(params, dict) or not any(old in params for old in renamed):
        return params
    for old, new in renamed.items():
        if old in params and new in params:
            raise invalid(f"both '{old}' (the old name) and '{new}' given for the same option: keep '{new}' only",
                          f"{at}.{old}")
    source = (info.context or {}).get("source", "<recipe>")
    for old, new in renamed.items():
        if old in params:
            deprecated(f"{where}.{old}", new, source)
    return {renamed.get(k, k): v for k, v in params.items()}


def _steps(kinds: type[enum.Enum], rel_keys: tuple[str, ...], section: str):
    """A list of ``{kind: {params}}`` items (or bare ``kind``) -> ``[{"kind", "params"}]``; each kind checked
    here so the message names the item (``passes[0]: expected one of ...``)."""
    allowed = [k.value for k in kinds]

    def convert(value: Any, info: ValidationInfo) -> Any:
        if value is None or (isinstance(value, list) and not value):  # no steps
            return ()
        if info.context is None:  # built in Python: the steps themselves
            return value
        out = []
        for i, item in enumerate(_as_list(value)):
            if isinstance(item, str):
                kind, params = item, {}
            elif isinstance(item, dict) and len(item) == 1:
                (kind, params), = item.items()
                params = {} if params is None else params
                if not isinstance(params, dict):
                    raise invalid(f"expected a mapping of options, got {kind_of(params)}", f"[{i}].{kind}")
            else:
                raise invalid(f"expected a one-key mapping like '- slice: {{width: 0.5}}', got {kind_of(item)}",
                              f"[{i}]")
            if kind not in allowed:
                raise invalid(not_one_of(allowed, kind),
                              f"[{i}]")
            if kind == "quantize":  # int8's options
                params = _renamed(params, f"{section}[{i}].{kind}", info, f"[{i}].{kind}")
            elif kind in ("ternary", "binary"):  # the qat command's
                params = _renamed(params, f"{section}[{i}].{kind}", info, f"[{i}].{kind}", QAT_RENAMED_KEYS)
            base = _base_dir(info)
            out.append({"kind": kinds(kind),
                        "params": {k: (_rel(x, base) if k in rel_keys else x) for k, x in params.items()}})
        return out

    return BeforeValidator(convert)


@schema
class ModelSpec:
    name: Optional[Text] = None
    path: Optional[Text] = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and not ("/" in value or value.startswith(".")):
            return {"name": value}
        if isinstance(value, str):  # a folder's path written as the model itself: as {path: ...}, not a name
            value = {"path": value}  # (found from the working directory, where every other file is the recipe's)
        if isinstance(value, dict) and ("name" in value) == ("path" in value) and set(value) <= {"name", "path"}:
            raise invalid("give exactly one of 'name' (an embedded model) or 'path' (a local folder)")
        if isinstance(value, dict) and isinstance(value.get("path"), str) and value["path"].strip():
            p = Path(value["path"])
            base = _base_dir(info)
            return {**value, "path": str(p if p.is_absolute() or base is None else base / p)}
        return value

    @property
    def ref(self) -> str:
        return self.name if self.name is not None else str(self.path)


@schema
class TrainStep:
    kind: TrainKind
    params: dict[str, Any]


@schema
class ExportSpec:
    exporter: Choice("torch", "dynamo", "optimum") = "torch"
    opset: Optional[Integer(13, 25)] = None


@schema
class PassStep:
    kind: PassKind
    params: dict[str, Any]


@schema
class SweepSpec:
    width: Annotated[tuple[Fraction, ...], BeforeValidator(lambda v: _as_list(v, "float"))] = (1.0,)
    depth: Annotated[tuple[Fraction, ...], BeforeValidator(lambda v: _as_list(v, "float"))] = (1.0,)
    precision: Annotated[tuple[OneOf(Precision, PRECISIONS), ...], BeforeValidator(_as_list)] = (Precision.FP32,)
    # options of each precision's pass, e.g. {ternary: {runtime: densest}, int8: {per_channel: true}}
    options: Annotated[dict[OneOf(Precision, [p for p in PRECISIONS if p != "fp32"]), dict[str, Any]],
                       BeforeValidator(lambda v: {} if v is None else v)] = Field(default_factory=dict)

    @field_validator("options", mode="after")
    @classmethod
    def _option_files(cls, value: dict, info: ValidationInfo) -> dict:
        # the files a precision's pass reads (static int8's calibration data and tokenizer) are relative to the
        # recipe's folder, as every other file name in a recipe is (they were read from the working directory)
        base = _base_dir(info)
        value = {prec: (_renamed(opts, f"sweep.options.{prec.value}", info, f".{prec.value}")
                        if prec is Precision.INT8 else opts) for prec, opts in value.items()}
        return {prec: {k: (_rel(v, base) if k == "calib_data" else _rel_path(v, base) if k == "tokenizer" else v)
                       for k, v in opts.items()} for prec, opts in value.items()}

    @field_validator("width", "depth", "precision")
    @classmethod
    def _once_each(cls, values: tuple) -> tuple:
        # a value given twice would build, benchmark and report the same variant twice
        rep = first_repeat(values, key=lambda v: float(v) if isinstance(v, (int, float)) else v)
        if rep is not None:
            raise invalid(f"{getattr(rep[1], 'value', rep[1])} appears twice", f"[{rep[0]}]")
        return values

    @model_validator(mode="after")
    def _options_of_swept(self) -> "SweepSpec":
        # options of a precision the sweep does not build would be read by nothing (nor checked): a typo there, or
        # a precision left out of the list, would pass unnoticed
        for prec in self.options:
            if prec not in self.precision:
                swept = ", ".join(p.value for p in self.precision)
                raise invalid(f"options for {prec.value}, which sweep.precision ({swept}) does not build: add it "
                              "there or remove them", f".options.{prec.value}")
        return self

    def grid(self) -> list[tuple[float, float, Precision]]:
        return [(w, d, p) for w in self.width for d in self.depth for p in self.precision]


@schema
class BenchSpec:
    # the bench command's --seq-len (a list: --seq-len 8,128)
    seq_len: Annotated[tuple[Integer(1, MAX_SEQ_LEN), ...], BeforeValidator(lambda v: _as_list(v, "int"))] = (8, 128)
    batch_size: Integer(1, 1024) = 1
    runs: Integer(1, 100000) = 50
    warmup: Integer(0, 100000) = 5
    threads: Optional[Integer(1, 256)] = None  # None: 1 (a profile of this machine says so beside its MEASURED rows)

    @model_validator(mode="before")
    @classmethod
    def _old_keys(cls, value: Any, info: ValidationInfo) -> Any:
        return _renamed(value, "bench", info, "", BENCH_RENAMED_KEYS) if info.context is not None else value


@schema
class EvalSpec:
    data: Text
    split: Choice("train", "dev", "test") = "test"
    max_eval: Optional[Integer(1)] = None
    max_length: Integer(8, MAX_SEQ_LEN) = 128
    # a user file's columns, as the eval command's --text-col, --text-pair-col (a sentence pair's second text;
    # none: one text an example, or a file's GLUE pair of columns, found as the CLI finds it) and --label-col
    text_col: ColumnName = "text"
    text_pair_col: Optional[ColumnName] = None
    label_col: ColumnName = "label"

    @model_validator(mode="after")
    def _columns(self) -> "EvalSpec":
        # DataConfig's rules (the eval step's), said here with the key path, at load
        problem = label_column_problem(self.text_col, self.label_col)
        if problem is not None:
            raise invalid(f"text_col and label_col {problem}", ".label_col")
        problem = pair_column_problem(self.text_pair_col, self.text_col, self.label_col)
        if problem is not None:
            raise invalid(problem, ".text_pair_col")
        if self.text_pair_col is not None and not looks_like_file(self.data):
            raise invalid(f"the built-in dataset {self.data!r} has one text an example, no pairs (a second text "
                          "column is a user file's)", ".text_pair_col")
        return self

    @model_validator(mode="before")
    @classmethod
    def _paths(cls, value: Any, info: ValidationInfo) -> Any:
        if info.context is not None:
            value = _renamed(value, "eval", info, "", EVAL_RENAMED_KEYS)
        if isinstance(value, dict) and isinstance(value.get("data"), str):
            return {**value, "data": _rel(value["data"], _base_dir(info))}
        return value


@schema
class ReportSpec:
    title: Optional[Text] = None


def _none_is_default(default):
    """An empty section (``bench:`` with nothing under it) means the defaults."""
    return BeforeValidator(lambda v: default if v is None else v)


@schema
class Recipe:
    schema_version: int
    name: Text
    model: ModelSpec
    description: Optional[str] = None
    task: Choice("sequence-classification", "feature-extraction") = "sequence-classification"
    train: Annotated[tuple[TrainStep, ...], _steps(TrainKind, ("data", "importance"), "train")] = ()
    export: Annotated[ExportSpec, _none_is_default({})] = ExportSpec()
    passes: Annotated[tuple[PassStep, ...], _steps(PassKind, ("importance", "neurons", "calib_data"), "passes")] = ()
    sweep: Annotated[SweepSpec, _none_is_default({})] = SweepSpec()
    devices: Annotated[tuple[Text, ...], BeforeValidator(_as_list)] = ("x86-host",)
    bench: Annotated[BenchSpec, _none_is_default({})] = BenchSpec()
    eval: Optional[EvalSpec] = None
    report: Annotated[ReportSpec, _none_is_default({})] = ReportSpec()
    source: str = "<recipe>"

    @model_validator(mode="before")
    @classmethod
    def _document(cls, value: Any, info: ValidationInfo) -> Any:
        if info.context is None:  # built in Python (Recipe(...), dataclasses.replace): fields as given
            return value
        if not isinstance(value, dict):
            raise invalid(f"expected a mapping, got {kind_of(value)}")
        if "source" in value:
            raise invalid(f"unknown key{did_you_mean('source', [f for f in TOP_KEYS])}", "source")
        if "schema_version" in value and (type(value["schema_version"]) is not int  # not 1.0, not true
                                          or value["schema_version"] != SCHEMA_VERSION):
            raise invalid(f"expected {SCHEMA_VERSION}, got {show(value['schema_version'])}", "schema_version")
        return {**value, "source": (info.context or {}).get("source", "<recipe>")}

    @field_validator("name")
    @classmethod
    def _name_is_a_file_name(cls, value: str) -> str:
        # it names the output files (models/<name>-<variant>.onnx): a path ("../x", "a/b") would write elsewhere
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", value) or ".." in value:
            raise invalid(f"expected a plain name (letters, digits, '.', '_', '-'; no '/' or '..'), got {value!r}")
        return value

    @field_validator("devices", mode="after")
    @classmethod
    def _device_files(cls, value: tuple, info: ValidationInfo) -> tuple:
        # a profile named by its file is relative to the recipe's folder; a device given twice would be benchmarked
        # and reported twice (the report refused it after all the work)
        out = tuple(_rel(v, _base_dir(info)) for v in value)
        # (a built-in profile's name in any case: load_profile matches it so, 'kirin990' and 'Kirin990' are one)
        rep = first_repeat(out, key=lambda v: Path(v).stem if v.lower().endswith((".yaml", ".yml")) else name_key(v))
        if rep is not None:
            raise invalid(f"{value[rep[0]]} appears twice", f"[{rep[0]}]")
        return out

    @model_validator(mode="after")
    def _across(self) -> "Recipe":
        if (self.task == "feature-extraction" and self.eval is not None and self.eval.max_eval is not None
                and self.eval.max_eval < 20):
            # an embedding model's eval is recall@10 over a corpus of max_eval texts (deploytool.train.embedding)
            raise invalid(f"an embedding corpus needs at least 20 texts, got {self.eval.max_eval}",
                          "eval.max_eval")
        if self.task == "feature-extraction" and self.eval is not None and self.eval.text_pair_col is not None:
            # an embedding model's eval embeds each corpus text alone (deploytool eval refuses --text-pair-col there)
            raise invalid("an embedding model's corpus is one text an example, no sentence pairs",
                          "eval.text_pair_col")
        return self


TOP_KEYS = {"schema_version", "name", "description", "model", "task", "train", "export", "passes", "sweep",
            "devices", "bench", "eval", "report"}


def parse_recipe(data: Any, source: str = "<recipe>", base_dir: Path | None = None) -> Recipe:
    """Validate a recipe document (already parsed YAML) into a :class:`Recipe`."""
    return validate(Recipe, without_extensions(data), source, context={"source": source, "base_dir": base_dir})


#: the largest recipe file read (a data file given in its place is refused unread)
MAX_RECIPE_BYTES = 1_000_000


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file."""
    from deploytool.choices import as_path

    p = as_path(path, "path", "a recipe file path")
    if not p.is_file():
        raise not_a_file(p, "recipe file")  # missing, a folder, or a device (/dev/zero: said so, never read)
    text = read_text_file(p, "recipe", MAX_RECIPE_BYTES, "the shipped ones are a few KB")
    try:
        data = safe_load_yaml(text)
    except yaml.YAMLError as e:
        line, problem = yaml_error_at(e, text)
        raise ConfigError(f"{p}: not valid YAML{'' if line is None else f' at line {line}'}: {problem}") from e
    return parse_recipe(data, source=str(p), base_dir=p.parent)
