"""Run a recipe: model -> training steps -> export -> passes -> sweep variants -> bench/eval -> report.

Every step is cached by the hash of its inputs and config (see :mod:`deploytool.recipes.cache`): a
rerun skips what is done, and changing one pass reruns from there. A failing step raises
:class:`RecipeStepError` naming the step; outputs of completed steps stay on disk.

The runner only orchestrates: each step calls one library function of deploytool (the same the CLI
calls), through :mod:`deploytool.recipes.steps`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from deploytool.errors import ConfigError, DeployError
from deploytool.recipes import steps as S
from deploytool.recipes.cache import StepCache, step_key
from deploytool.recipes.schema import PassKind, Recipe, TrainKind
from deploytool.variant import Precision, Variant

logger = logging.getLogger(__name__)


def step_kind(what: str, sub: enum.Enum | None = None) -> str:
    """The kind a stored step is named by (``<kind>-<key[:16]>`` in the store): ``export``, ``slice``, ``eval``,
    ``eval-teacher``, ``bench``, or ``train-<kind>`` / ``pass-<kind>`` / ``precision-<precision>``."""
    if (what in _PLAIN_KINDS) != (sub is None) or (sub is not None and type(sub) is not _SUB_KINDS.get(what)):
        raise ValueError(f"no step kind {what!r} with {sub!r}")
    return what if sub is None else f"{what}-{sub.value}"


_PLAIN_KINDS = ("export", "slice", "eval", "eval-teacher", "bench")
_SUB_KINDS: dict[str, type[enum.Enum]] = {"train": TrainKind, "pass": PassKind, "precision": Precision}


def step_kinds() -> list[str]:
    """Every kind of step a recipe run can store (what ``cache clear --kind`` accepts)."""
    return sorted([*_PLAIN_KINDS, *(step_kind(w, m) for w, e in _SUB_KINDS.items() for m in e)])


class RecipeStepError(DeployError):
    """A recipe step failed; the message names the step and the cause."""


@dataclasses.dataclass
class StepRecord:
    name: str
    kind: str
    key: str
    cached: bool
    seconds: float
    outputs: dict[str, str]


@dataclasses.dataclass
class SweepVariant:
    """One variant a sweep built: what it is (the one :class:`deploytool.variant.Variant` record, relative
    to the recipe's model) and where its file is (``path``, its cache ``key``)."""

    variant: Variant
    path: Path
    key: str

    @property
    def width(self) -> float:
        return self.variant.width

    @property
    def depth(self) -> float:
        return self.variant.depth

    @property
    def precision(self) -> Precision:
        return Precision(self.variant.precision)

    @property
    def label(self) -> str:
        return self.variant.label


@dataclasses.dataclass
class RunResult:
    recipe: str
    out_dir: Path
    steps: list[StepRecord]
    variants: list[SweepVariant]
    report_dir: Path | None
    headline: list[dict[str, Any]]
    seconds: float
    picks: list[str] = dataclasses.field(default_factory=list)  # best variant per device
    next_steps: list[str] = dataclasses.field(default_factory=list)  # what takes a pick to its Arm device

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "out_dir": str(self.out_dir),
            "seconds": round(self.seconds, 2),
            "steps": [dataclasses.asdict(s) for s in self.steps],
            "variants": [{"label": v.label, "width": v.width, "depth": v.depth, "precision": v.precision.value,
                          "path": str(v.path)} for v in self.variants],
            "report_dir": str(self.report_dir) if self.report_dir else None,
            "headline": self.headline,
            "picks": self.picks,
            "next": self.next_steps,
        }


ProgressFn = Callable[[str, str], None]  # (step name, status: "start" | "cached" | "done")


def _file_inputs(params: Any) -> list[str]:
    """``file:<sha256>`` of every existing file a step's options name (a user's CSV, an importance
    file), and of the tokenizer files in a folder they name (static int8's ``tokenizer``): the step's key changes
    when the file's content does, not only when its path does."""
    from deploytool.models import TOKENIZER_FILES
    from deploytool.recipes.cache import canonical, file_digest

    out: list[str] = []
    stack = [canonical(params)]  # a typed spec (the eval's data file) as the mapping of its fields
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, (str, Path)) and str(x) and len(str(x)) < 4096:
            p = Path(x)
            try:
                if p.is_file():
                    out.append(f"file:{file_digest(p)}")
                elif p.is_dir():  # its tokenizer's files only: a model folder's weights are not read for a key
                    out.extend(f"file:{n}:{file_digest(p / n)}" for n in TOKENIZER_FILES if (p / n).is_file())
            except OSError:
                pass
    return sorted(out)


class _Runner:
    def __init__(self, recipe: Recipe, out_dir: Path, progress: ProgressFn | None, store: Path | None = None,
                 max_bytes: int | None = None):
        self.recipe = recipe
        self.out = out_dir
        self.cache = StepCache(out_dir, store=store, max_bytes=max_bytes)
        self.progress = progress or (lambda name, status: None)
        self.records: list[StepRecord] = []

    def step(self, name: str, kind: str, config: Any, inputs: list[str],
             fn: Callable[[Path], dict[str, str]]) -> tuple[str, Path, dict[str, str]]:
        """Run (or reuse) one cached step. ``fn(tmpdir)`` writes into tmpdir and returns {role: filename}."""
        key = step_key(kind, config, list(inputs) + _file_inputs(config))
        folder = self.cache.dir_for(kind, key)
        t0 = time.perf_counter()
        if self.cache.done(kind, key):
            outputs = json.loads((folder / "outputs.json").read_text())
            self.progress(name, "cached")
            self.records.append(StepRecord(name, kind, key, True, 0.0, outputs))
            return key, folder, outputs
        self.progress(name, "start")
        try:
            about = {"step": name, "recipe": self.recipe.name, "out": str(self.out)}
            with self.cache.building(kind, key, about) as tmp:
                outputs = fn(tmp)
                (tmp / "outputs.json").write_text(json.dumps(outputs, indent=1, sort_keys=True))
            folder = self.cache.dir_for(kind, key)
        except DeployError as e:
            raise RecipeStepError(f"step '{name}' failed: {e}") from e
        except Exception as e:  # a library bug still names the step
            raise RecipeStepError(f"step '{name}' failed: {type(e).__name__}: {' '.join(str(e).split())}") from e
        dt = time.perf_counter() - t0
        self.progress(name, "done")
        self.records.append(StepRecord(name, kind, key, False, round(dt, 2), outputs))
        return key, folder, outputs


def _is_classifier(folder: Path) -> bool:
    """A Hugging Face folder with a sequence-classification head (a teacher worth a reference row)."""
    try:
        archs = json.loads((Path(folder) / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return False
    return any("SequenceClassification" in a for a in archs)


def check_recipe(recipe: Recipe) -> list[str]:
    """:func:`_check_recipe`, its errors naming the recipe's file (the schema's do already)."""
    try:
        return _check_recipe(recipe)
    except ConfigError as e:
        source = recipe.source
        if source == "<recipe>" or str(e).startswith(f"{source}: "):
            raise
        raise ConfigError(f"{source}: {e}") from None


def _check_recipe(recipe: Recipe) -> list[str]:
    """Build every step's typed config without running anything; return the plan, one line a step.

    A bad option anywhere (an unknown key, a width of 1.5, a typo'd profile) fails here, naming the
    step, before any training or export starts.
    """
    from deploytool import scratch

    from deploytool.models import resolve_model

    S.load_profiles(recipe.devices, measure=False)  # validated; this machine is measured when a run reports
    try:  # an unknown name, a missing folder, a decoder: now rather than after the run has begun
        from deploytool.export.hf import check_encoder_folder

        check_encoder_folder(resolve_model(recipe.model.ref))
    except DeployError as e:
        raise ConfigError(f"model: {e}") from None
    plan = [f"model {recipe.model.ref}"]
    with scratch.temporary_directory() as d:
        tmp = Path(d)
        for i, t in enumerate(recipe.train):
            S.train_config(t, tmp, tmp, f"train[{i}] {t.kind.value}")
            _check_files(t.params, f"train[{i}] {t.kind.value}")
            plan.append(f"train[{i}] {t.kind.value}")
    from deploytool.export.config import ExportConfig

    try:  # the exporter's own opset range (the schema allows every opset some exporter takes)
        ExportConfig(model=recipe.model.ref, exporter=recipe.export.exporter, opset=recipe.export.opset)
    except ConfigError as e:
        raise ConfigError(f"export: {e}") from None
    plan.append(f"export ({recipe.export.exporter})")
    for i, p in enumerate(recipe.passes):
        S.pass_config(p, f"passes[{i}] {p.kind.value}")
        _check_files(p.params, f"passes[{i}] {p.kind.value}")
        plan.append(f"passes[{i}] {p.kind.value}")
    if recipe.eval is not None:
        # a classifier's eval reads the file's columns as the step does (a missing one: the CLI's line, at --check)
        cols = ({"text_col": recipe.eval.text_col, "text_pair_col": recipe.eval.text_pair_col,
                 "label_col": recipe.eval.label_col} if recipe.task == "sequence-classification" else {})
        _check_files({"data": recipe.eval.data, **cols}, "eval")
    for prec in recipe.sweep.precision:
        if prec is not Precision.FP32:
            opts = recipe.sweep.options.get(prec, {})
            S.precision_config(prec, opts, f"sweep.options.{prec.value}")
            _check_files(opts, f"sweep.options.{prec.value}")
            tok = opts.get("tokenizer")
            if isinstance(tok, str) and not Path(tok).exists():
                raise ConfigError(f"sweep.options.{prec.value}: tokenizer: {tok} does not exist")
    _check_sweep_sizes(recipe)
    base, by = base_precision(recipe)
    if base in (Precision.INT8, Precision.TERNARY, Precision.BINARY):
        # a quantized or packed model is neither sliced nor converted again: say so now, not after the training
        cut = [f"{x:g}" for x in (*recipe.sweep.width, *recipe.sweep.depth) if x != 1.0]
        other = [p.value for p in recipe.sweep.precision if p not in (Precision.FP32, base)]
        if cut or other:
            asks = ", ".join(([f"width/depth {', '.join(dict.fromkeys(cut))}"] if cut else [])
                             + ([f"precision {', '.join(other)}"] if other else []))
            raise ConfigError(f"sweep: {by} leaves {'an' if base is Precision.INT8 else 'a'} {base.value} model, "
                              f"which cannot be sliced or converted again ({asks} asked): put {base.value} in "
                              f"sweep.precision instead, or keep the sweep at width [1], depth [1]")
    precs = _sweep_precisions(recipe)
    n = len(recipe.sweep.width) * len(recipe.sweep.depth) * len(precs)
    plan.append(f"sweep: {n} variants ({len(recipe.sweep.width)} widths x {len(recipe.sweep.depth)} "
                f"depths x {len(precs)} precisions)")
    if recipe.eval is not None:
        plan.append(f"eval on {recipe.eval.data} {recipe.eval.split}")
    if recipe.bench.threads is not None:  # as `bench --threads` refuses it: every timing oversubscribed, inflated
        from deploytool.runtime.machine import usable_cores

        cores = usable_cores()
        if recipe.bench.threads > cores:
            raise ConfigError(f"bench.threads: {recipe.bench.threads} intra-op threads but this machine lets the run "
                              f"use {cores} core(s) (affinity, cgroup quota); use threads <= {cores}")
    plan.append(f"bench at seq {', '.join(map(str, recipe.bench.seq_len))}; report for {', '.join(recipe.devices)}")
    return plan


def _check_files(params: dict[str, Any], where: str) -> None:
    """A file a step reads (``data``, ``importance``, ``calib_data``) that is not there: refused by ``--check`` too,
    not when the step starts. A dataset's name (``rotten-tomatoes``) is not a file."""
    from deploytool.choices import did_you_mean
    from deploytool.data import calibration_texts, dataset_names, load_dataset
    from deploytool.recipes.schema import looks_like_file

    for key in ("data", "importance", "calib_data"):
        if key not in params or params[key] is None:
            continue
        v = params[key]
        if not isinstance(v, str):
            raise ConfigError(f"{where}: {key}: expected a dataset name or a file path, got {type(v).__name__}")
        if looks_like_file(v) and not Path(v).exists():
            raise ConfigError(f"{where}: {key}: {v} does not exist")
        if key == "importance":
            continue
        if not looks_like_file(v) and v not in dataset_names():
            raise ConfigError(f"{where}: {key}: {v!r} is neither a file nor a built-in dataset "
                              f"({', '.join(dataset_names())}){did_you_mean(v, dataset_names())}")
        if looks_like_file(v) and Path(v).is_file() and Path(v).stat().st_size <= _READ_AT_CHECK_BYTES:
            # its columns and rows now, not after the training and the export
            cols = {c: params[c] for c in ("text_col", "text_pair_col", "label_col")
                    if isinstance(params.get(c), str)}
            try:
                if key == "calib_data":  # calibration reads text only, from its own columns
                    calibration_texts(v, n=1, **{c: params[f"calib_{c}"] for c in ("text_col", "text_pair_col")
                                                 if isinstance(params.get(f"calib_{c}"), str)})
                else:  # split as the step splits it (one label, or too few rows for the splits, is refused)
                    load_dataset(v, **cols, **({"seed": params["seed"]} if isinstance(params.get("seed"), int)
                                               else {}))
            except DeployError as e:
                raise ConfigError(f"{where}: {key}: {e}") from None


def _with_tokenizer(options: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Static int8's options with the recipe's model folder as the tokenizer where none is given: the pass's own
    fallback, the export's ``source`` metadata, is a label in a recipe (every static int8 step failed)."""
    if options.get("static") and not options.get("tokenizer"):
        return {**options, "tokenizer": str(folder)}
    return options


def _check_sweep_sizes(recipe: Recipe) -> None:
    """A sweep width that keeps no head or depth that keeps no layer of the model, refused by ``--check`` (the
    slice step refused it after the training and the export); the model's config.json says how many there are,
    unless a distillation step makes another shape first."""
    import json

    from deploytool.models import resolve_model
    from deploytool.passes.slice_subnetwork import depth_keep, width_keep

    if any(t.kind is TrainKind.DISTILL for t in recipe.train):
        return
    try:
        cfg = json.loads((Path(resolve_model(recipe.model.ref)) / "config.json").read_text(encoding="utf-8"))
        heads, layers = int(cfg["num_attention_heads"]), int(cfg["num_hidden_layers"])
    except (DeployError, OSError, ValueError, KeyError, TypeError):
        return  # other names (n_heads, ...): the slice step says it
    by = None  # the slice among the passes the sweep starts from, if any
    for i, p in enumerate(recipe.passes):  # the sweep cuts what a slice among the passes left of the model
        if p.kind is PassKind.PRUNE_HEADS:
            return  # layers of different head counts: the slice step says it
        if p.kind is PassKind.SLICE:
            sc = S.pass_config(p, f"passes[{i}] slice")
            heads = width_keep(sc.width, heads, sc.rounding)
            layers = len(depth_keep(sc.depth, layers, sc.rounding)) if sc.depth < 1.0 else layers
            by = f"passes[{i}] slice"
            if heads < 1 or layers < 1:
                return  # the pass refuses it, naming itself

    def of(n: int, what: str) -> str:
        return f"the model's {n} {what}" if by is None else f"the {n} {what} {by} leaves"

    for i, w in enumerate(recipe.sweep.width):
        if width_keep(w, heads) < 1:
            raise ConfigError(f"sweep.width[{i}]: {w:g} keeps round({w:g} * {heads}) = 0 of {of(heads, 'heads')}; "
                              f"use a width >= {0.5 / heads:.3g}")
    for i, d in enumerate(recipe.sweep.depth):
        if d < 1.0 and not depth_keep(d, layers):
            raise ConfigError(f"sweep.depth[{i}]: {d:g} keeps 0 of {of(layers, 'layers')}; use a depth >= "
                              f"{0.5 / layers:.3g}")
    # two values that cut the same model: the same variant built, benchmarked and ranked twice (a coin toss)
    seen: dict = {}
    for i, w in enumerate(recipe.sweep.width):
        k = width_keep(w, heads)
        if k in seen:
            raise ConfigError(f"sweep.width[{i}]: {w:g} keeps the same {k} of {of(heads, 'heads')} as "
                              f"{seen[k]:g}: the same model twice")
        seen[k] = w
    seen = {}
    for i, d in enumerate(recipe.sweep.depth):
        k = tuple(depth_keep(d, layers)) if d < 1.0 else tuple(range(layers))
        if k in seen:
            raise ConfigError(f"sweep.depth[{i}]: {d:g} keeps the same {len(k)} of {of(layers, 'layers')} as "
                              f"{seen[k]:g}: the same model twice")
        seen[k] = d


#: data files up to this size are read by ``--check`` (columns, rows); larger ones when their step runs
_READ_AT_CHECK_BYTES = 64 << 20


def base_precision(recipe: Recipe) -> tuple[Precision, str | None]:
    """The precision of the model the sweep starts from, and the pass that set it (None: the export's fp32).
    ``quantize`` and ``pack`` in ``passes`` change it; the sweep's as-is variants are named after it."""
    from deploytool.passes import config_class

    prec, by = Precision.FP32, None
    for i, p in enumerate(recipe.passes):
        packed = prec in (Precision.TERNARY, Precision.BINARY)
        if prec is Precision.INT8 or (packed and p.kind is not PassKind.REPACK):
            takes = "only repack takes" if packed else "no pass takes"
            raise ConfigError(f"passes[{i}] {p.kind.value}: {by} before it leaves "
                              f"{'a' if packed else 'an'} {prec.value} model, which {takes}: put the "
                              f"{p.kind.value} first")
        if p.kind not in (PassKind.QUANTIZE, PassKind.PACK):
            continue
        cfg, by = S.pass_config(p, f"passes[{i}] {p.kind.value}"), f"passes[{i}] {p.kind.value}"
        if isinstance(cfg, config_class("pack")):
            prec = Precision.TERNARY if cfg.weights.value == "ternary" else Precision.BINARY  # split-binary: binary
        else:
            prec = Precision.FP16 if isinstance(cfg, config_class("fp16")) else Precision.INT8
    return prec, by


def _sweep_precisions(recipe: Recipe) -> list[tuple[str, Precision | None]]:
    """(label, pass to run or None for the model as it is) per precision of the sweep. The as-is variant takes
    the base model's precision (an fp16 base's is fp16, not fp32); a precision equal to the base's is that same
    variant, once."""
    base, _ = base_precision(recipe)
    out: list[tuple[str, Precision | None]] = []
    for prec in recipe.sweep.precision:
        entry = (base.value, None) if prec in (Precision.FP32, base) else (prec.value, prec)
        if entry not in out:
            out.append(entry)
    return out


def _refuse_model_folder(out: Path, recipe: Recipe) -> None:
    """OutputPathError when the run's folder is the model folder the recipe reads, or inside it (the run writes
    models/, report/ and steps/ there: into the user's checkpoint)."""
    from deploytool.errors import OutputPathError
    from deploytool.models import resolve_model

    try:
        model = Path(resolve_model(recipe.model.ref)).resolve()
        target = out.resolve()
    except (DeployError, OSError):
        return
    if target == model or model in target.parents:
        raise OutputPathError(f"{out}: is the model folder the recipe reads ({recipe.model.ref}) or inside it; "
                              "give the run a folder of its own")


def _refuse_store_folder(out: str | Path, store: str | Path) -> None:
    """OutputPathError when the run's folder and the step store are one folder, or one is inside the other: the
    store would hold the run's report, models and links to its own entries, and ``cache clear`` then refuses it
    as a folder it did not make (it removes only what the store made); the run's cleanup of its folder and the
    store's size cap would work on each other's files. Checked before either is made."""
    from deploytool.errors import OutputPathError

    try:
        target, root = Path(os.path.realpath(out)), Path(os.path.realpath(store))
    except (OSError, ValueError):
        return
    if target == root:
        how = "is also the step store"
    elif root in target.parents:
        how = f"is inside the step store {store}"
    elif target in root.parents:
        how = f"holds the step store {store}"
    else:
        return
    raise OutputPathError(f"{out}: the run's output folder {how} (--cache-dir); give each a folder of its own "
                          "(--no-shared-cache keeps the steps in the output folder); nothing run")


def check_run_paths(recipe: Recipe, out_dir: str | Path, store: str | Path | None) -> None:
    """OutputPathError when the run's output folder or its step store cannot be used (a file or a link to nothing in
    the way, the model folder the recipe reads, one folder inside the other); nothing is made. ``run --check`` calls
    it too: it said 'ok' for an -o the run then refused."""
    from deploytool.onnx_io import check_folder_path

    check_folder_path(out_dir)
    _refuse_model_folder(Path(out_dir), recipe)
    if store is not None:
        check_folder_path(store, "step store, --cache-dir")
        _refuse_store_folder(out_dir, store)


def run_recipe(recipe: Recipe, out_dir: str | Path, *, progress: ProgressFn | None = None,
               store: str | Path | None = None, max_store_bytes: int | None = None) -> RunResult:
    """Run every step of ``recipe`` into ``out_dir`` (cached) and write the report.

    ``store``: a folder of finished steps shared by every recipe and output folder (see
    :mod:`deploytool.recipes.cache`; None keeps the steps under ``out_dir``); ``max_store_bytes`` caps
    its size (least recently used entries of other runs go first). While it runs, the run is registered in the
    store (:func:`~deploytool.recipes.cache.active_run`): another run's size cap and ``cache clear`` leave the
    store alone meanwhile."""
    from deploytool.recipes.cache import active_run

    _check_run_arguments(recipe, out_dir, progress, store, max_store_bytes)
    # everything that can be checked before minutes of work, and before the output folder or the store is made (a
    # refused run left an empty store folder behind): the model, profiles, every step's config, the files the steps
    # read, the output folder's path
    check_recipe(recipe)
    check_run_paths(recipe, out_dir, store)
    with active_run(Path(store) if store is not None else None) as marker:
        return _run_recipe(recipe, out_dir, progress=progress, store=store, max_store_bytes=max_store_bytes,
                           marker=marker)


def _check_run_arguments(recipe: Any, out_dir: Any, progress: Any, store: Any, max_store_bytes: Any) -> None:
    """run_recipe's arguments, each refused in one line before any step runs: a recipe file's path for the recipe
    (AttributeError "'str' object has no attribute 'devices'"), None or a number for a folder (TypeError), a progress
    callback that cannot be called (TypeError after the first step had run), a size cap that is no byte count
    (taken, and ignored or compared as text)."""
    import numbers

    from deploytool.choices import as_path, kind_of
    from deploytool.choices import require_callback

    if not isinstance(recipe, Recipe):
        raise ConfigError(f"run_recipe: recipe must be a Recipe (load_recipe(path) reads one), got "
                          f"{type(recipe).__name__}")
    as_path(out_dir, "out_dir", "a folder path")
    if store is not None:
        as_path(store, "store", "a folder path")
    require_callback(progress, "progress", "taking a step's name and its status")
    if max_store_bytes is not None and (isinstance(max_store_bytes, bool) or not isinstance(max_store_bytes, numbers.Integral)
                                        or max_store_bytes < 0):
        raise ConfigError(f"max_store_bytes: expected a number of bytes >= 0 (or None), got {kind_of(max_store_bytes)}")


def _run_recipe(recipe: Recipe, out_dir: str | Path, *, progress: ProgressFn | None,
                store: str | Path | None, max_store_bytes: int | None, marker: Path | None) -> RunResult:
    from deploytool.onnx_io import check_folder_path, make_folder

    t_start = time.perf_counter()
    rec = recipe  # checked by run_recipe (check_recipe) before the store was made
    out = check_folder_path(out_dir)  # refused where it cannot be used by run_recipe (check_run_paths) already
    make_folder(out)  # where the file system still refuses it (/proc, a read-only mount as root): one line
    from deploytool.recipes.cache import run_folder_lock

    with run_folder_lock(out):
        return _run_locked(rec, out, progress=progress, store=store, max_store_bytes=max_store_bytes, marker=marker,
                           t_start=t_start)


def _run_locked(rec: Recipe, out: Path, *, progress: ProgressFn | None, store: str | Path | None,
                max_store_bytes: int | None, marker: Path | None, t_start: float) -> RunResult:
    r = _Runner(rec, out, progress, Path(store) if store is not None else None, max_store_bytes)
    r.cache.run_marker = marker
    gone = r.cache.remove_leftovers()
    if gone:
        logger.info("removed %d unfinished step folder(s) of runs that died: %s", len(gone), ", ".join(gone))

    # 1. the model folder
    model_dir, model_digest = S.model_folder_and_digest(rec.model)
    key = f"model:{model_digest}"
    folder = model_dir

    # 2. training steps, each from the previous folder; the teacher (the reference row of the report) is
    # the last fine-tuned full model the later steps start from (the model itself where none fine-tunes)
    teacher, teacher_key = (model_dir, key) if rec.train and _is_classifier(model_dir) else (None, None)
    for i, t in enumerate(rec.train):
        prev_key, prev_dir, name = key, folder, f"train[{i}] {t.kind.value}"
        key, sdir, outs = r.step(name, step_kind("train", t.kind), t.params, [prev_key],
                                 lambda tmp, t=t, prev_dir=prev_dir, name=name: S.train_step(t, prev_dir, tmp, name))
        folder = sdir / outs["model"]
        if t.kind is TrainKind.FINETUNE:
            teacher, teacher_key = folder, key

    # 3. export
    key, sdir, outs = r.step("export", step_kind("export"), {"export": rec.export, "task": rec.task}, [key],
                             # its source names no recipe: one export serves every recipe with this model
                             lambda tmp: S.export_step(folder, rec.export, rec.task, tmp,
                                                       source=f"{rec.model.ref} -> {key[:12]}"))
    exported, export_key = sdir / outs["model"], key

    # 4. passes applied before the sweep (reorder, prune-heads, ...)
    base_key, base_path = key, exported
    for i, p in enumerate(rec.passes):
        src = base_path
        # a slice's key names its rounding rule: slices cached under the earlier half-up default are not reused
        params = {"rounding": "dynabert", **p.params} if p.kind is PassKind.SLICE else p.params
        if p.kind is PassKind.QUANTIZE:
            p = dataclasses.replace(p, params=_with_tokenizer(dict(p.params), folder))
            params = p.params
        base_key, sdir, outs = r.step(f"passes[{i}] {p.kind.value}", step_kind("pass", p.kind), params, [base_key],
                                      lambda tmp, p=p, src=src, i=i: S.pass_step(p, src, tmp,
                                                                                 f"passes[{i}] {p.kind.value}"))
        base_path = sdir / outs["model"]

    # 5. the sweep: slice once per (width, depth), then each precision
    variants: list[SweepVariant] = []
    # a slice among the passes cut the model the sweep starts from: each variant is named by what its file is,
    # relative to the recipe's model, as its own variant record says (the base was named w1, a 0.5 of it w0.5)
    from deploytool.variant import file_variant

    cut = any(p.kind is PassKind.SLICE for p in rec.passes)
    for w in rec.sweep.width:
        for d in rec.sweep.depth:
            if (w, d) == (1.0, 1.0):
                skey, spath = base_key, base_path
            else:
                skey, sdir, outs = r.step(f"slice w={w:g} d={d:g}", step_kind("slice"),
                                          {"width": w, "depth": d, "rounding": "dynabert"}, [base_key],
                                          lambda tmp, w=w, d=d: S.slice_step(base_path, w, d, tmp, "dynabert"))
                spath = sdir / outs["model"]
            shape = file_variant(spath) if cut else None
            vw, vd = (shape.width, shape.depth) if shape is not None else (w, d)
            for label, prec in _sweep_precisions(rec):
                if prec is None:  # the model as it is
                    variants.append(SweepVariant(Variant(rec.name, vw, vd, label), spath, skey))
                    continue
                opts = _with_tokenizer(dict(rec.sweep.options.get(prec, {})), folder)
                vkey, vdir, outs = r.step(f"{prec.value} w={w:g} d={d:g}", step_kind("precision", prec),
                                          {"precision": prec, "options": opts}, [skey],
                                          lambda tmp, prec=prec, spath=spath, opts=opts:
                                          S.precision_step(prec, opts, spath, tmp))
                variants.append(SweepVariant(Variant(rec.name, vw, vd, prec.value), vdir / outs["model"], vkey))

    # 6. every variant under a readable name (hard links into the step cache), with its external data if any
    models_dir = out / "models"
    models_dir.mkdir(exist_ok=True)
    mine: set[str] = set()
    for v in variants:
        files = S.publish(v.path, models_dir / f"{rec.name}-{v.label}.onnx")
        v.path = files[0]
        mine.update(f.name for f in files)
    # the run owns its output folder's models: those of an earlier run into it that this one does not make would sit
    # beside them, described by no run.json or report (their data files too: publish names them <model>.onnx[.k].data)
    ours = {*models_dir.glob("*.onnx"), *models_dir.glob("*.onnx.data"), *models_dir.glob("*.onnx.*.data")}
    for f in sorted(ours):
        if f.name not in mine and f.is_file():
            logger.warning("%s: removed %s, a model of an earlier run into this folder that this run does not make",
                           out, f.name)
            f.unlink()
    S.publish_companions(folder, models_dir)
    if rec.eval is None:
        (out / "accuracy.json").unlink(missing_ok=True)

    # 7. accuracy of every variant (when the recipe names a dataset)
    accuracy_file = None
    if rec.eval is not None:
        records = []
        for v in variants:
            # the key names the record's kind: evals cached before per-example predictions were kept rerun
            emb = rec.task == "feature-extraction"  # judged against the exported fp32 model's neighbours
            _, edir, outs = r.step(f"eval {v.label}", step_kind("eval"), {"eval": rec.eval, "record": "per-example"},
                                   [v.key, f"tok:{model_digest}"] + ([f"ref:{export_key}"] if emb else []),
                                   lambda tmp, v=v, emb=emb: S.eval_step(v.path, folder, rec.eval, tmp,
                                                                         reference=exported if emb else None))
            metrics = json.loads((edir / outs["metrics"]).read_text())
            records.append({"model": str(v.path), "label": v.label, **S.accuracy_entry(metrics)})
        if teacher is not None and rec.task == "sequence-classification":
            _, edir, outs = r.step("eval teacher", step_kind("eval-teacher"), rec.eval, [teacher_key],
                                   lambda tmp: S.eval_step(teacher, teacher, rec.eval, tmp))
            metrics = json.loads((edir / outs["metrics"]).read_text())
            records.append({"model": str(teacher), "label": "teacher (PyTorch fp32)", "role": "reference",
                            **S.accuracy_entry(metrics)})
        accuracy_file = out / "accuracy.json"
        S.write_json(accuracy_file, records)

    # 8. one benchmark of all variants on this host; device latency is projected per profile
    # timings are this machine's: a store shared with another (a shared disk) or kept over a CPU change does not
    # hand back that machine's as this one's
    _, bdir, outs = r.step("bench", step_kind("bench"), {"bench": rec.bench},
                           [v.key for v in variants] + [S.host_key()],
                           lambda tmp: S.bench_step(variants, rec.bench, tmp))
    # the step may have been made by another run (another -o, another recipe with the same variants): its file
    # names that run's published models, in this run's order (the key lists the variants' keys in order); this
    # run's copy names its own (a report of the first run's files, which changed when they were gone)
    bench_file = S.bench_for_run(bdir / outs["results"], variants, out / "bench.json")

    # 9. report (always rewritten: cheap, and it reflects this run)
    report_dir = out / "report"
    headline, picks, next_steps = S.report_step(rec, variants, bench_file, accuracy_file, report_dir)
    result = RunResult(rec.name, out, r.records, variants, report_dir, headline, time.perf_counter() - t_start,
                       picks, next_steps)
    from deploytool.onnx_io import atomic_write

    with atomic_write(out / "run.json") as f:
        json.dump(result.to_dict(), f, indent=1)
    r.cache.evict()  # the store's cap, now that this run's steps are known (they stay)
    return result
