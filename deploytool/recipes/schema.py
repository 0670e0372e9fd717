"""The recipe schema (version 1): a typed, validated description of a whole deployment run.

A recipe is YAML, loaded with ``yaml.safe_load`` and validated once, here. Every error names the file,
the key path and what was expected, e.g.::

    recipes/quickstart.yaml: sweep.width[2]: expected a number in (0, 1], got 1.5

Layout (all keys but ``schema_version``, ``name`` and ``model`` are optional)::

    schema_version: 1
    name: quickstart
    model: minilm                  # an embedded name, or {path: some/hf-folder}
    task: sequence-classification  # or feature-extraction
    train:                         # ordered training steps (deploytool.train)
      - finetune: {data: rotten-tomatoes, epochs: 1, max_train: 2000}
      - dynabert: {widths: [0.5, 1.0], depths: [0.75, 1.0]}
    export: {exporter: torch, opset: 17}
    passes:                        # applied to the exported model, in order, before the sweep
      - reorder: {importance: magnitude}
    sweep:                         # the grid every variant is built from
      width: [1.0, 0.5]
      depth: [1.0, 0.75]
      precision: [fp32, int8, ternary]
      options: {ternary: {runtime: densest}}   # each precision pass's options
    devices: [kirin990, raspberry-pi-4, x86-host]
    bench: {seq_lens: [8, 128], runs: 50, warmup: 5}
    eval: {data: rotten-tomatoes, split: test, max_examples: 500}
    report: {title: "MiniLM on phones"}
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
from pathlib import Path
from typing import Any, Sequence

import yaml

from deploytool.errors import ConfigError, InputFileError
from deploytool.variant import PRECISIONS, Precision

SCHEMA_VERSION = 1


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


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str | None = None
    path: str | None = None

    @property
    def ref(self) -> str:
        return self.name if self.name is not None else str(self.path)


@dataclasses.dataclass(frozen=True)
class TrainStep:
    kind: TrainKind
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    exporter: str = "torch"
    opset: int | None = None


@dataclasses.dataclass(frozen=True)
class PassStep:
    kind: PassKind
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    width: tuple[float, ...] = (1.0,)
    depth: tuple[float, ...] = (1.0,)
    precision: tuple[Precision, ...] = (Precision.FP32,)
    # options of each precision's pass, e.g. {ternary: {runtime: densest}, int8: {per_channel: true}}
    options: dict[Precision, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def grid(self) -> list[tuple[float, float, Precision]]:
        return [(w, d, p) for w in self.width for d in self.depth for p in self.precision]


@dataclasses.dataclass(frozen=True)
class BenchSpec:
    seq_lens: tuple[int, ...] = (8, 128)
    batch: int = 1
    runs: int = 50
    warmup: int = 5
    threads: int | None = None  # None: the device profile's threads


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    data: str
    split: str = "test"
    max_examples: int | None = None
    max_length: int = 128


@dataclasses.dataclass(frozen=True)
class ReportSpec:
    title: str | None = None


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    model: ModelSpec
    task: str = "sequence-classification"
    train: tuple[TrainStep, ...] = ()
    export: ExportSpec = ExportSpec()
    passes: tuple[PassStep, ...] = ()
    sweep: SweepSpec = SweepSpec()
    devices: tuple[str, ...] = ("x86-host",)
    bench: BenchSpec = BenchSpec()
    eval: EvalSpec | None = None
    report: ReportSpec = ReportSpec()
    source: str = "<recipe>"


# ----------------------------------------------------------------------------- validation


class _V:
    """Validation helpers that know which file they read, so every message names it."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {msg}")

    def mapping(self, key: str, value: Any, allowed: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {_kind(value)}")
        for k in value:
            if k not in allowed:
                near = difflib.get_close_matches(str(k), sorted(allowed), n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else f" (allowed: {', '.join(sorted(allowed))})"
                raise self.fail(f"{key}.{k}" if key else str(k), f"unknown key{hint}")
        for k in sorted(required):
            if k not in value:
                raise self.fail(f"{key}.{k}" if key else k, "required key is missing")
        return value

    def string(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected a non-empty string, got {_kind(value)}")
        return value

    def integer(self, key: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {_kind(value)}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.fail(key, f"expected an integer in [{lo}, {hi if hi is not None else 'inf'}], got {value}")
        return value

    def fraction(self, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise self.fail(key, f"expected a number in (0, 1], got {_kind(value)}")
        if not 0 < value <= 1:
            raise self.fail(key, f"expected a number in (0, 1], got {value}")
        return float(value)

    def enum(self, key: str, value: Any, cls: type[enum.Enum], allowed: Sequence[str] | None = None):
        allowed = [e.value for e in cls] if allowed is None else list(allowed)
        if value not in allowed:
            near = difflib.get_close_matches(str(value), allowed, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise self.fail(key, f"expected one of {', '.join(allowed)}, got {value!r}{hint}")
        return cls(value)

    def seq(self, key: str, value: Any) -> list:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return [value]
        if not isinstance(value, list) or not value:
            raise self.fail(key, f"expected a non-empty list, got {_kind(value)}")
        return value

    def single_key(self, key: str, value: Any) -> tuple[str, dict]:
        """A list item ``{kind: {params}}`` (or a bare ``kind``)."""
        if isinstance(value, str):
            return value, {}
        if not isinstance(value, dict) or len(value) != 1:
            raise self.fail(key, f"expected a one-key mapping like '- slice: {{width: 0.5}}', got {_kind(value)}")
        (kind, params), = value.items()
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise self.fail(f"{key}.{kind}", f"expected a mapping of options, got {_kind(params)}")
        return str(kind), params


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, (dict, list)):
        return type(value).__name__
    return f"{type(value).__name__} {value!r}"


TOP_KEYS = {"schema_version", "name", "description", "model", "task", "train", "export", "passes", "sweep",
            "devices", "bench", "eval", "report"}


_FILE_SUFFIXES = (".csv", ".jsonl", ".json", ".tsv", ".onnx", ".yaml", ".yml")


def _rel(value: Any, base_dir: Path | None) -> Any:
    """A file name in a recipe is relative to the recipe's folder (dataset names are left alone)."""
    if base_dir is None or not isinstance(value, str):
        return value
    p = Path(value)
    if p.is_absolute() or not (p.suffix.lower() in _FILE_SUFFIXES or "/" in value):
        return value
    return str(base_dir / p)


def parse_recipe(data: Any, source: str = "<recipe>", base_dir: Path | None = None) -> Recipe:
    """Validate a recipe document (already parsed YAML) into a :class:`Recipe`."""
    v = _V(source)
    d = v.mapping("", data, TOP_KEYS, {"schema_version", "name", "model"})
    if d["schema_version"] != SCHEMA_VERSION:
        raise v.fail("schema_version", f"expected {SCHEMA_VERSION}, got {d['schema_version']!r}")
    name = v.string("name", d["name"])

    m = d["model"]
    if isinstance(m, str):
        model = ModelSpec(name=m)
    else:
        m = v.mapping("model", m, {"name", "path"})
        if ("name" in m) == ("path" in m):
            raise v.fail("model", "give exactly one of 'name' (an embedded model) or 'path' (a local folder)")
        if "path" in m:
            p = Path(v.string("model.path", m["path"]))
            if not p.is_absolute() and base_dir is not None:
                p = (base_dir / p)
            model = ModelSpec(path=str(p))
        else:
            model = ModelSpec(name=v.string("model.name", m["name"]))

    task = d.get("task", "sequence-classification")
    if task not in ("sequence-classification", "feature-extraction"):
        raise v.fail("task", f"expected sequence-classification or feature-extraction, got {task!r}")

    train = []
    for i, item in enumerate(v.seq("train", d["train"]) if d.get("train") else []):
        kind, params = v.single_key(f"train[{i}]", item)
        params = {k: (_rel(x, base_dir) if k in ("data", "importance") else x) for k, x in params.items()}
        train.append(TrainStep(v.enum(f"train[{i}]", kind, TrainKind), params))

    ex = v.mapping("export", d.get("export") or {}, {"exporter", "opset"})
    exporter = ex.get("exporter", "torch")
    if exporter not in ("torch", "dynamo", "optimum"):
        raise v.fail("export.exporter", f"expected torch, dynamo or optimum, got {exporter!r}")
    opset = v.integer("export.opset", ex["opset"], 13, 25) if ex.get("opset") is not None else None

    passes = []
    for i, item in enumerate(v.seq("passes", d["passes"]) if d.get("passes") else []):
        kind, params = v.single_key(f"passes[{i}]", item)
        params = {k: (_rel(x, base_dir) if k in ("importance", "neurons", "calib") else x) for k, x in params.items()}
        passes.append(PassStep(v.enum(f"passes[{i}]", kind, PassKind), params))

    sw = v.mapping("sweep", d.get("sweep") or {}, {"width", "depth", "precision", "options"})
    opts = v.mapping("sweep.options", sw.get("options") or {}, set(PRECISIONS) - {"fp32"})
    for k, o in opts.items():
        v.mapping(f"sweep.options.{k}", o, set(o) if isinstance(o, dict) else set())
    sweep = SweepSpec(
        width=tuple(v.fraction(f"sweep.width[{i}]", x) for i, x in enumerate(v.seq("sweep.width", sw.get("width", [1.0])))),
        depth=tuple(v.fraction(f"sweep.depth[{i}]", x) for i, x in enumerate(v.seq("sweep.depth", sw.get("depth", [1.0])))),
        precision=tuple(v.enum(f"sweep.precision[{i}]", x, Precision, PRECISIONS)
                        for i, x in enumerate(v.seq("sweep.precision", sw.get("precision", ["fp32"])))),
        options={Precision(k): dict(o) for k, o in opts.items()},
    )
    devices = tuple(v.string(f"devices[{i}]", x) for i, x in enumerate(v.seq("devices", d.get("devices", ["x86-host"]))))

    b = v.mapping("bench", d.get("bench") or {}, {"seq_lens", "batch", "runs", "warmup", "threads"})
    bench = BenchSpec(
        seq_lens=tuple(v.integer(f"bench.seq_lens[{i}]", x, 1, 4096) for i, x in enumerate(v.seq("bench.seq_lens", b.get("seq_lens", [8, 128])))),
        batch=v.integer("bench.batch", b.get("batch", 1), 1, 1024),
        runs=v.integer("bench.runs", b.get("runs", 50), 1, 100000),
        warmup=v.integer("bench.warmup", b.get("warmup", 5), 0, 100000),
        threads=v.integer("bench.threads", b["threads"], 1, 256) if b.get("threads") is not None else None,
    )

    ev = None
    if d.get("eval") is not None:
        e = v.mapping("eval", d["eval"], {"data", "split", "max_examples", "max_length"}, {"data"})
        split = e.get("split", "test")
        if split not in ("train", "dev", "test"):
            raise v.fail("eval.split", f"expected train, dev or test, got {split!r}")
        ev = EvalSpec(data=_rel(v.string("eval.data", e["data"]), base_dir), split=split,
                      max_examples=v.integer("eval.max_examples", e["max_examples"], 1) if e.get("max_examples") else None,
                      max_length=v.integer("eval.max_length", e.get("max_length", 128), 8, 4096))
        if task == "feature-extraction" and e.get("max_examples") is not None and ev.max_examples < 20:
            # an embedding model's eval is recall@10 over a corpus of max_examples texts (deploytool.train.embedding)
            raise v.fail("eval.max_examples", f"an embedding corpus needs at least 20 texts, got {ev.max_examples}")

    r = v.mapping("report", d.get("report") or {}, {"title"})
    report = ReportSpec(title=v.string("report.title", r["title"]) if r.get("title") else None)

    return Recipe(name=name, model=model, task=task, train=tuple(train), export=ExportSpec(exporter, opset),
                  passes=tuple(passes), sweep=sweep, devices=devices, bench=bench, eval=ev, report=report,
                  source=source)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{p}: no such recipe file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(e, 'problem', e)}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not a UTF-8 text file") from e
    return parse_recipe(data, source=str(p), base_dir=p.parent)
