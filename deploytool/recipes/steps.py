"""What each recipe step does: one call into deploytool's library per step.

Each ``*_step`` writes its outputs into the temporary folder it is given and returns
``{role: file name}``; the runner caches and names the step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from deploytool.choices import parse_enum
from deploytool.errors import ConfigError
from deploytool.recipes.schema import BenchSpec, EvalSpec, ExportSpec, ModelSpec, PassKind, PassStep, Precision, \
    TrainKind, TrainStep
from deploytool.variant import PRECISIONS

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- model


def model_folder_and_digest(spec: ModelSpec) -> tuple[Path, str]:
    """The model folder and a digest of what is in it (every byte of its config, weights and tokenizer files)."""
    from deploytool.models import TOKENIZER_FILES, resolve_model as _resolve, weight_files
    from deploytool.recipes.cache import file_digest

    folder = _resolve(spec.ref)
    h = hashlib.sha256()
    # every byte of the config, the weights and the tokenizer's files: an edit anywhere in them (a same-size
    # edit in the middle of a checkpoint, a changed vocabulary) runs the steps that read them again
    tokenizer = [folder / n for n in TOKENIZER_FILES]
    weights = weight_files(folder)
    for index in [w for w in weights if w.name.endswith(".index.json")]:
        weights += _shards(index)  # a sharded checkpoint's weights are in the files its index names
    for f in sorted({folder / "config.json", *weights, *tokenizer}):
        if f.is_file():
            h.update(f"{f.relative_to(folder).as_posix()}:{file_digest(f)}".encode())
    return folder, h.hexdigest()


def _shards(index: Path) -> list[Path]:
    """The shard files a ``*.index.json`` of a sharded checkpoint names (its ``weight_map``'s values), inside
    its folder; [] for an index that cannot be read (loading the model says what is wrong with it)."""
    try:
        names = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    root = index.parent.resolve()
    out = []
    for n in sorted(str(x) for x in names):
        f = (index.parent / n).resolve()
        if f.is_relative_to(root):
            out.append(index.parent / n)
    return out


def load_profiles(names: tuple[str, ...], *, measure: bool = True):
    """The recipe's device profiles, validated; ``measure=False`` (``run --check``, which runs nothing) builds a
    profile of this machine without running its microbenchmark (about 20 s to minutes on a fresh cache)."""
    from deploytool.profiles.host import HostOptions
    from deploytool.profiles.loader import load_profile

    out = []
    for i, n in enumerate(names):
        try:
            out.append(load_profile(n, host=None if measure else HostOptions(measure=False)))
        except ConfigError as e:  # named by its key path, as the recipe's other errors are
            raise ConfigError(f"devices[{i}]: {e}") from None
    return out


# -------------------------------------------------------------------------------------- training

_DATA_KEYS = {"data", "text_col", "text_pair_col", "label_col", "seed", "max_length", "max_train", "max_eval"}
# a config field whose recipe key is its CLI option's name, not the field's (qat --embeddings -> QATConfig's
# quantize_embeddings): field -> key
_FIELD_KEYS = {"quantize_embeddings": "embeddings"}


def _split_params(params: dict[str, Any], where: str):
    from deploytool.train.config import DataConfig

    data = {k: v for k, v in params.items() if k in _DATA_KEYS}
    rest = {k: v for k, v in params.items() if k not in _DATA_KEYS}
    _check_types(DataConfig, {k: v for k, v in data.items() if k != "data"}, where)  # data: checked as a file/name
    try:
        return DataConfig(**data), rest
    except (TypeError, ConfigError) as e:  # DataConfig's own type check (data: 5) names the key, not the step
        raise ConfigError(f"{where}: {e}") from None


def _check_types(cls, kwargs: dict[str, Any], where: str) -> None:
    """ConfigError naming an option of a plain dataclass config whose value has the wrong type for its field (a
    YAML ``batch_size: 2.5`` or ``epochs: one`` reached the config's range checks, or a comparison's TypeError)."""
    import types
    import typing

    from deploytool.validation import show

    if not dataclasses.is_dataclass(cls):
        return
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an annotation this check cannot resolve: the config's own checks remain
        return

    def ok(v: Any, t: Any) -> bool | None:  # None: a type this check does not judge
        origin, args = typing.get_origin(t), typing.get_args(t)
        if origin in (typing.Union, types.UnionType):
            judged = [ok(v, a) for a in args]
            return None if any(j is None for j in judged) else any(judged)
        if t is type(None):
            return v is None
        if t is bool:
            return isinstance(v, bool)
        if t is int:
            return isinstance(v, int) and not isinstance(v, bool)
        if t is float:
            return isinstance(v, (int, float)) and not isinstance(v, bool)
        if t is str:
            return isinstance(v, str)
        if t is Path:
            return isinstance(v, (str, Path))
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            inner = [ok(x, args[0]) for x in v] if isinstance(v, (list, tuple)) else [False]
            return None if any(j is None for j in inner) else all(inner)
        return None

    names = {bool: "true or false", int: "an integer", float: "a number", str: "text", Path: "a path"}
    # a field the config checks in its own words (choices.OWN_CHECK: DataConfig's columns), as @config leaves it
    from deploytool.choices import OWN_CHECK

    own = {f.name for f in dataclasses.fields(cls) if OWN_CHECK.items() <= f.metadata.items()}
    for k, v in list(kwargs.items()):
        t = None if k in own else hints.get(k)
        if t is float and isinstance(v, str):  # YAML 1.1 reads 1e-4 (no dot) as text: the number it spells
            try:
                kwargs[k] = v = float(v)
            except ValueError:
                pass
        if t is not None and ok(v, t) is False:
            inner = typing.get_args(t)
            want = names.get(t) or (f"a list of {names.get(inner[0], 'values')}s".replace("an integers", "integers")
                                    .replace("a numbers", "numbers") if typing.get_origin(t) is tuple and inner
                                    else str(t).replace("typing.", "").replace("pathlib.", ""))
            raise ConfigError(f"{where}: {k}: expected {want}, got {show(v)}")


def _build(cls, where: str, **kwargs):
    if hasattr(cls, "__pydantic_fields__"):  # a schema (deploytool.validation): its own key-path messages
        from deploytool.validation import validate

        return validate(cls, kwargs, where)
    _check_types(cls, kwargs, where)
    if dataclasses.is_dataclass(cls):  # an unknown option, named as the recipe's other keys are (not TypeError's words)
        from deploytool.choices import did_you_mean

        known = {f.name for f in dataclasses.fields(cls)}
        for k in kwargs:
            if k not in known:
                allowed = sorted({_FIELD_KEYS.get(f, f) for f in known - {"model", "teacher", "output", "data",
                                                                          "reorder_output"}} | _DATA_KEYS)
                raise ConfigError(f"{where}: {k}: unknown key{did_you_mean(k, allowed)} (allowed: "
                                  f"{', '.join(allowed)})")
    try:
        return cls(**kwargs)
    except TypeError as e:  # an unknown option
        msg = str(e).split("__init__() ")[-1]
        raise ConfigError(f"{where}: {msg}") from None
    except ConfigError as e:  # a value out of range, named by the config itself
        raise ConfigError(f"{where}: {e}") from None


# kind -> (config class, "module:function", the field that takes the previous model folder)
_TRAIN = {
    TrainKind.FINETUNE: ("deploytool.train.config:TrainConfig", "deploytool.train.finetune:finetune", "model"),
    TrainKind.IMPORTANCE: ("deploytool.train.config:ImportanceConfig",
                           "deploytool.train.importance:compute_importance", "model"),
    TrainKind.DISTILL: ("deploytool.train.distill:DistillConfig", "deploytool.train.distill:distill", "teacher"),
    TrainKind.DYNABERT: ("deploytool.train.config:DynaBertConfig", "deploytool.train.dynabert:train_dynabert",
                         "teacher"),
    TrainKind.TERNARY: ("deploytool.train.config:QATConfig", "deploytool.train.qat:train_qat", "teacher"),
    TrainKind.BINARY: ("deploytool.train.config:QATConfig", "deploytool.train.qat:train_qat", "teacher"),
}


def _load(target: str):
    import importlib

    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def train_config(step: TrainStep, src: Path, tmp: Path, where: str):
    """The typed config of one training step (validated) and the library function that runs it."""
    cls_name, fn_name, src_field = _TRAIN[step.kind]
    data, rest = _split_params(step.params, where)
    # the recipe sets the step's input, output and (ternary/binary) mode: given here they would train from or
    # write to another place than the step's own folder, which the cache then records as done
    reserved = {src_field, "model", "output", "reorder_output"} | ({"mode"} if step.kind in (TrainKind.TERNARY,
                                                                                            TrainKind.BINARY) else set())
    given = sorted(k for k in rest if k in reserved)
    if given:
        raise ConfigError(f"{where}: {', '.join(given)}: set by the recipe (the step's input model, output folder "
                          "and kind), not an option of a recipe step; remove it")
    if step.kind in (TrainKind.TERNARY, TrainKind.BINARY) and "embeddings" in rest:
        if "quantize_embeddings" in rest:  # a step built in Python with both (the schema refuses both in a file)
            raise ConfigError(f"{where}: quantize_embeddings: the old name of embeddings; keep 'embeddings' only")
        rest = {("quantize_embeddings" if k == "embeddings" else k): v for k, v in rest.items()}
    kwargs: dict[str, Any] = {src_field: src if src_field == "teacher" else str(src), "output": tmp / "model",
                              "data": data, **rest}
    if step.kind is TrainKind.IMPORTANCE:
        kwargs.update(model=src, output=tmp / "importance.json", reorder_output=tmp / "model")
    if step.kind in (TrainKind.TERNARY, TrainKind.BINARY):
        kwargs["mode"] = step.kind.value
    return _build(_load(cls_name), where, **kwargs), _load(fn_name)


def train_step(step: TrainStep, src: Path, tmp: Path, where: str) -> dict[str, str]:
    cfg, fn = train_config(step, src, tmp, where)
    result = fn(cfg)
    (tmp / "result.json").write_text(json.dumps(result, indent=1, default=str))
    return {"model": "model", "result": "result.json"}


# ---------------------------------------------------------------------------------------- export


def export_step(folder: Path, spec: ExportSpec, task: str, tmp: Path, source: str) -> dict[str, str]:
    from deploytool.export import ExportConfig, export

    # the step folder's absolute path would make the file differ between runs: record the source as
    # the recipe names it (the model and the key of the step that made it)
    cfg = ExportConfig(model=str(folder), task=task, exporter=spec.exporter, opset=spec.opset, source=source)
    result = export(cfg, tmp / "model.onnx")
    (tmp / "result.json").write_text(json.dumps({"max_abs_diff": result.max_abs_diff, "opset": result.opset,
                                                 "exporter": result.exporter.value, "bytes": result.file_size},
                                                indent=1))
    return {"model": "model.onnx", "result": "result.json"}


# ---------------------------------------------------------------------------------------- passes


def pass_config(step: PassStep, where: str):
    """The typed, validated config of one recipe pass."""
    p = dict(step.params)
    if step.kind is PassKind.QUANTIZE:
        prec = parse_enum(Precision, p.pop("precision", "int8"), f"{where}: precision",
                          allowed=[x for x in Precision if x.value in PRECISIONS and x is not Precision.FP32])
        _refuse_unknown_quantize_keys(prec, p, where)
        return precision_config(prec, p, where)
    if step.kind is PassKind.REORDER and p.get("importance") == "magnitude":
        p["importance"] = None  # the data-free fallback
    if step.kind is PassKind.PRUNE_HEADS and isinstance(p.get("heads"), str):  # as `--heads` spells it: '0:1,3;2:0'
        from deploytool.passes.prune_heads import parse_heads_spec

        try:
            p["heads"] = parse_heads_spec(p["heads"])
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    from deploytool.passes import config_class

    return _build(config_class(step.kind.value), where, **p)


def _refuse_unknown_quantize_keys(prec: Precision, params: dict[str, Any], where: str) -> None:
    """A ``quantize`` pass's keys are ``precision`` and its pass config's fields: an unknown one is named with both
    (the pass config alone would list its fields without ``precision``, and offer no did-you-mean for 'precison')."""
    from deploytool.choices import did_you_mean
    from deploytool.passes import config_class

    cls = config_class({"fp16": "fp16", "int8": "int8"}.get(prec.value, "pack"))  # as precision_pass_config picks
    allowed = ["precision", *(f.name for f in dataclasses.fields(cls) if f.init)]
    for k in params:
        if k not in allowed:
            raise ConfigError(f"{where}: {k}: unknown key{did_you_mean(str(k), allowed)} (allowed: "
                              f"{', '.join(allowed)})")


def precision_config(prec: Precision, params: dict[str, Any], where: str):
    """The typed config of the pass that makes ``prec`` (fp32 needs none): the one that ``fit`` uses too
    (``passes.variants.precision_pass_config``), with the recipe's file:key in its messages."""
    from deploytool.passes.variants import precision_pass_config

    if prec is Precision.FP32:
        raise ConfigError(f"{where}: precision {prec.value} needs no pass")
    try:
        return precision_pass_config(prec.value, params)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _run_pass(cfg, src: Path, tmp: Path) -> dict[str, str]:
    from deploytool.passes import transform

    result = transform(src, tmp / "model.onnx", cfg)
    info = {"stats": result.to_dict(), "skipped": [{"node": s.node, "reason": s.reason} for s in result.skipped]}
    (tmp / "result.json").write_text(json.dumps(info, indent=1, default=str))
    return {"model": "model.onnx", "result": "result.json"}


def pass_step(step: PassStep, src: Path, tmp: Path, where: str) -> dict[str, str]:
    return _run_pass(pass_config(step, where), src, tmp)


def slice_step(src: Path, width: float, depth: float, tmp: Path, rounding: str = "dynabert") -> dict[str, str]:
    from deploytool.passes.slice_subnetwork import SliceConfig

    # width = depth = 1 still runs the pass (a byte copy) so that the step has its file
    return _run_pass(SliceConfig(width=width, depth=depth, rounding=rounding), src, tmp)


def precision_step(prec: Precision, options: dict[str, Any], src: Path, tmp: Path) -> dict[str, str]:
    return _run_pass(precision_config(prec, dict(options), f"sweep.options.{prec.value}"), src, tmp)


# ------------------------------------------------------------------------------------------ eval


def eval_step(model: Path, tokenizer_dir: Path, spec: EvalSpec, tmp: Path, *,
              reference: Path | None = None) -> dict[str, str]:
    """Accuracy of a classifier on the spec's split; for an embedding model (``reference`` given: the
    exported fp32 model), recall@10 of the reference's neighbours over the first ``max_eval``
    texts of ``spec.data`` (1,000 by default)."""
    from deploytool.train.evaluate import evaluate
    from deploytool.train.config import DataConfig, EvalConfig

    # the columns as `deploytool eval --text-col/--text-pair-col/--label-col` hands them to the same DataConfig
    cols = {"text_col": spec.text_col, "text_pair_col": spec.text_pair_col, "label_col": spec.label_col}
    if reference is not None:
        cfg = EvalConfig(model=model, tokenizer=tokenizer_dir, reference=reference, corpus=spec.data,
                         max_queries=spec.max_eval or 1000,
                         data=DataConfig(data=None, max_length=spec.max_length,  # no labels in a corpus
                                         **{k: v for k, v in cols.items() if k != "label_col"}),
                         output=tmp / "metrics.json")
    else:
        cfg = EvalConfig(model=model, tokenizer=tokenizer_dir, split=spec.split,
                         data=DataConfig(data=spec.data, max_length=spec.max_length, max_eval=spec.max_eval, **cols),
                         output=tmp / "metrics.json")
    evaluate(cfg)
    return {"metrics": "metrics.json"}


def accuracy_entry(metrics: dict) -> dict[str, Any]:
    """What accuracy.json keeps of an eval record: the figure, n, its interval, the examples' identity
    and each example's correctness (sorted by id; what the report's paired test reads)."""
    out = {k: metrics[k] for k in ("accuracy", "unit", "metric", "n", "ci95", "examples", "f1_macro", "cosine_mean",
                                   "cosine_min", "scores", "correct") if k in metrics}
    pr = metrics.get("predictions")
    if isinstance(pr, dict) and "correct" not in out:
        out["correct"] = "".join("1" if a == b else "0" for a, b in zip(pr["pred"], pr["label"]))
    return out


# ----------------------------------------------------------------------------------------- bench


def publish(src: Path, dst: Path) -> list[Path]:
    """Give a cached variant a readable name: hard links (copies across file systems) of its file and of each of
    its external-data files, named after ``dst`` (:func:`deploytool.onnx_io.publish_model`); returns the files,
    the model first."""
    from deploytool.onnx_io import publish_model

    return publish_model(src, dst)


def companion_names() -> tuple[str, ...]:
    """The files of a model folder that its ONNX variants are read with, published beside them: the tokenizer's,
    config.json (its label names) and the training record (the dataset it was trained on)."""
    from deploytool.models import TOKENIZER_FILES
    from deploytool.variant import TRAINED_META_FILE

    return (*TOKENIZER_FILES, "config.json", TRAINED_META_FILE)


def publish_companions(folder: Path, models_dir: Path) -> None:
    """Copy :func:`companion_names` of the model folder ``folder`` (the last trained one) into ``models_dir``,
    beside the published variants, so that ``eval``, ``bundle``, ``quantize --static`` and ``qnn`` read a file of
    it as it is; each written atomically, and those of an earlier run into the folder that ``folder`` lacks
    removed (a stale tokenizer.json would be read before this model's own sentencepiece file)."""
    import shutil

    from deploytool.onnx_io import atomic_write

    for name in companion_names():
        src, dst = folder / name, models_dir / name
        if src.is_file():
            with src.open("rb") as f, atomic_write(dst, "wb") as g:
                shutil.copyfileobj(f, g)
        elif dst.is_file():
            dst.unlink()


def write_json(path: Path, data: Any) -> None:
    from deploytool.onnx_io import atomic_write

    with atomic_write(path) as f:
        json.dump(data, f, indent=1, default=str)


def host_key() -> str:
    """``host:<key>`` of the machine the bench step times on: its CPU, usable cores and ONNX Runtime (the key of its
    host microbenchmark, :meth:`deploytool.runtime.host.HostFacts.key`)."""
    from deploytool.recipes.cache import dependency_versions
    from deploytool.runtime.host import detect_host

    return f"host:{detect_host().key(dependency_versions()['onnxruntime'] or 'unknown')}"


def bench_step(variants, bench: BenchSpec, tmp: Path) -> dict[str, str]:
    """All variants timed in turns in one clean worker on this host (CPU EP, the recipe's threads)."""
    from deploytool.bench import BenchConfig, run_benchmark, write_json as write_bench

    cfg = BenchConfig(models=tuple(v.path for v in variants), seq_lens=bench.seq_len, batch=bench.batch_size,
                      warmup=bench.warmup, runs=bench.runs, threads=bench.threads or 1)
    write_bench(run_benchmark(cfg), tmp / "bench.json")
    return {"results": "bench.json"}


def bench_for_run(cached: Path, variants, dst: Path) -> Path:
    """The step's bench JSON with each model's path and name made this run's published file's (the models were
    benchmarked in the variants' order, which the step's key fixes); written to ``dst``."""
    data = json.loads(cached.read_text())
    models = data.get("models") or []
    if len(models) != len(variants):  # not a file this function can map: the report reads it as it is
        return cached
    paths = [str(Path(v.path).resolve()) for v in variants]
    for m, path in zip(models, paths):
        m["path"], m["name"] = path, Path(path).stem
        if isinstance(m.get("session"), dict):
            m["session"]["model"] = path
    if isinstance(data.get("config"), dict):
        data["config"]["models"] = paths
    for r in data.get("results") or []:
        i = r.get("model_index")
        if isinstance(i, int) and 0 <= i < len(paths):
            r["model"], r["name"] = paths[i], Path(paths[i]).stem
    write_json(dst, data)
    return dst


# ---------------------------------------------------------------------------------------- report


def report_step(recipe, variants, bench_file: Path, accuracy_file: Path | None,
                out_dir: Path) -> tuple[list[dict], list[str]]:
    """Write the device report; return the headline rows (one per variant, a column per device, at the
    largest sequence length) and one line per device naming the best variant that fits its budgets."""
    from deploytool.report import ReportConfig, build_report

    cfg = ReportConfig(results=(bench_file,), out_dir=out_dir,
                       accuracy=(accuracy_file,) if accuracy_file else (), profiles=recipe.devices,
                       title=recipe.report.title or f"{recipe.name}: {recipe.model.ref} on {', '.join(recipe.devices)}")
    result = build_report(cfg)
    by_path = {str(v.path.resolve()): v for v in variants}
    seq = max(recipe.bench.seq_len)
    table: dict[str, dict[str, Any]] = {}
    ref = result.info.get("accuracy_reference")
    if ref:  # the teacher the variants came from: the reference row (no file, no latency)
        table["teacher"] = {"variant": ref["name"], "MB": None, "acc % [95% CI] n": ref["label"],
                            f"host p50 ms @{seq}": None}
    for r in result.rows:
        if r.seq_len != seq:
            continue
        v = by_path.get(str(Path(r.model_path).resolve()))
        name = v.label if v else r.model
        row = table.setdefault(name, {"variant": name, "MB": r.size_mb, "acc % [95% CI] n": r.accuracy_label(),
                                      f"host p50 ms @{seq}": r.p50_ms})
        mark = "" if r.budget_pass is None else (" ok" if r.budget_pass else " over")
        kind = "" if r.device_latency_source.startswith("measured") else "~"
        row[r.device] = f"{kind}{r.device_latency_ms:.2f}{mark}" if r.device_latency_ms is not None else "n/a"
    if "teacher" in table and len(table) > 1:
        cols = list(next(v for k, v in table.items() if k != "teacher"))
        table["teacher"] = {c: table["teacher"].get(c, "-") for c in cols}
    picks = []
    for d in result.info.get("summary", []):
        line = f"{d['device']}: {d['verdict_short']}"
        if len(d.get("tied_with_best") or []) > 1:
            line += f"; {d['accuracy_note']}"
        picks.append(line)
    return list(table.values()), picks, next_commands(recipe, result.info.get("summary", []), out_dir.parent)


def _shown(path: str | Path) -> str:
    """``path`` relative to the current directory where it is inside it (as a user would type it), else whole."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


def next_commands(recipe, summary: list[dict[str, Any]], out: Path) -> list[str]:
    """One ``next:`` line per Arm device with a pick: the commands that take the picked model there (its phone
    bundle where ``deploytool bundle`` makes one, else the .onnx, checked under QEMU; or measured on the device
    over SSH), with paths from the current directory."""
    import shlex

    from deploytool.bundle import phone_bundle_style
    from deploytool.profiles import load_profile

    profiles = {}  # name -> (the recipe's spelling of it, the profile)
    for spec in recipe.devices:
        try:
            prof = load_profile(spec)
        except Exception:  # noqa: BLE001 - loaded by the report already; a hint only, never a failed run
            continue
        profiles[prof.name] = (spec, prof)
    lines = []
    for d in summary:
        spec, prof = profiles.get(d["device"], (None, None))
        if not d.get("model_path") or prof is None or prof.arch != "aarch64":
            continue
        model, dev = shlex.quote(_shown(d["model_path"])), shlex.quote(str(spec))
        remote = f"on the device: deploytool bench {model} --profile {dev} --remote USER@HOST"
        if phone_bundle_style(prof) is None:  # no mobile EP or NPU: the .onnx is what ships (bundle refuses it)
            lines.append(f"next ({prof.name}): deploytool verify-arm64 {model} --profile {dev} (under QEMU); or "
                         f"{remote}")
            continue
        bundle = shlex.quote(_shown(out / "bundles" / prof.name))
        lines.append(f"next ({prof.name}): deploytool bundle {model} --profile {dev} -o {bundle}, then "
                     f"deploytool verify-arm64 {bundle} (under QEMU); or {remote}")
    return lines
