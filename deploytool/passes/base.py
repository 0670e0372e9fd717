"""The one pass contract every graph transform follows.

A pass is an ``onnx_ir`` in-place pass built from one typed, already-validated config. The runner
(:meth:`DeployPass.__call__`, onnx_ir's ``PassBase.__call__``) calls, in this order:

- ``requires(model)``: the preconditions. A refusal raises a :class:`deploytool.errors.DeployError`
  subclass (``PassRefusedError``, ``UnavailableError``) before anything is touched; onnx_ir wraps it
  in ``PreconditionError`` and :meth:`DeployPass.__call__` unwraps it again, so callers (and the CLI,
  exit 2) see the one-line error that names the problem.
- ``call(model)``: the edit. It returns a :class:`DeployPassResult`: the model, whether it changed
  (``modified``), the pass's own details (``stats``) and what it skipped with the reason for each.
  ``call`` checks no preconditions of its own.
- ``ensures(model)``: the output checks (a ``DeployError`` there is a pass bug, or an input the pass
  could not see was wrong; unwrapped the same way).

A pipeline is a :class:`PassSequence` and is itself a pass: the opset upgrade, the packing and the
residual Add->Sum rewrite of ``pack`` are three passes run in order by the one file runner
(:func:`run_pass_file`). The result's typed fields (:class:`StructureCounts` of a structured pass, the
file sizes, the :class:`GateStats`, the variant label) are what callers read;
:meth:`DeployPassResult.to_dict` is the flat JSON form (recipes' ``result.json``, benchmarks).

The verification gate: :func:`run_pass_file` (every pass's file runner) runs the output once in ONNX
Runtime on a small padded batch (:mod:`deploytool.runtime.verify`) before the file is renamed into
place; a model ORT cannot load or run, or one with a non-finite output, raises
:class:`deploytool.errors.VerificationError` naming the pass and the node ORT named, and nothing is
written. A pass whose :meth:`DeployPass.preserves_outputs` is True (reorder) must also give the input
model's outputs on the same batch (``max|diff| <= 1e-4 * max(1, max|ref|)``). ``verify=False`` skips
the gate; the stats then say ``verified: False``. An output that fails because its input fails alike is the
input's fault (an :class:`~deploytool.errors.InputFileError` naming the input), decided on the error's
``failure`` (what ORT refused), not its words; an input ORT runs on one row only (torch's opset-23 ModernBERT)
has its output checked on one row, and the stats' ``gate_input_note`` says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Iterator

import onnx
import onnx_ir as ir

from deploytool import scratch
from deploytool.errors import DeployError, InputFileError, VerificationError
from deploytool.runtime.procstat import release_free_memory  # noqa: F401 - used here and by passes

logger = logging.getLogger(__name__)

# outputs of a pass that preserves outputs may differ from the input's by this, relative to max(1, max|ref|)
PRESERVE_RTOL = 1e-4
PRESERVE_RTOL_FP16 = 1e-2  # the same for a model with fp16 weights


@dataclasses.dataclass(frozen=True)
class Skip:
    """Something a pass did not transform, and why (shown in reports, never silent)."""

    node: str
    reason: str


@dataclasses.dataclass
class StructureCounts:
    """A structured pass's encoder counts before and after (:class:`StructuredPass`)."""

    family: str
    exporter: str
    layers_before: int
    layers_after: int
    heads_before: int
    heads_after: int
    neurons_before: int
    neurons_after: int
    params_before: int
    params_after: int
    heads_per_layer: list[int]
    neurons_per_layer: list[int]


@dataclasses.dataclass
class GateStats:
    """What the file runner's verification gate did: ``verified`` False when it was skipped
    (``verify=False``); ``process`` "separate" and its ``peak_rss_bytes`` for big inputs; ``note`` when
    there was nothing of the pass's to run (a byte copy). ``seconds``: how long the runner waited for the
    verdict once the output was written (a separate process started with the pass did part of its work
    before: ``reference_reused`` True when the input's reference outputs computed then were used)."""

    verified: bool = False
    seconds: float = 0.0
    note: str | None = None
    process: str | None = None
    peak_rss_bytes: int | None = None
    reference_reused: bool | None = None
    # asked for by the pass (:meth:`DeployPass.gate_counts_casts`): the precision casts ORT inserted in the
    # gate's session of the output, counted from that run
    inserted_casts: int | None = None
    # the separate process's steps, in seconds from the moment the output was handed to it (see
    # VerifyReport.timeline): where the wait went
    timeline: dict[str, float] | None = None
    # the memory that process touched for the output's session while it waited (DeployPass.gate_session_bytes)
    warmed_bytes: int | None = None
    # the input did not load in ONNX Runtime with its graph optimizations; the gate compared with it run without
    # them (VerifyReport.reference_note): the user is told, the output is what loads
    input_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"verified": self.verified, "verify_s": self.seconds}
        if self.note is not None:
            out["verify_note"] = self.note
        if self.input_note is not None:
            out["gate_input_note"] = self.input_note
        if self.process is not None:
            out.update(gate_process=self.process, gate_peak_rss_bytes=self.peak_rss_bytes)
        if self.reference_reused is not None:
            out["gate_reference_reused"] = self.reference_reused
        if self.timeline:
            out["gate_timeline"] = dict(self.timeline)
        if self.warmed_bytes is not None:
            out["gate_warmed_bytes"] = self.warmed_bytes
        return out


@dataclasses.dataclass(frozen=True)
class EarlyReference:
    """A gate reference the gate's process can run before the pass has finished (:meth:`DeployPass.early_reference`):
    ``model``, a file (the input), or ``build``, ``"module:function"`` that the gate's process calls as
    ``function(src, folder, argument)`` to make the reference, written into ``folder`` (its path returned) or held
    in memory (a :class:`deploytool.runtime.verify.MemoryReference`) (``argument`` must pickle: a pass's config);
    ``min_cosine`` as in :meth:`DeployPass.gate_reference`."""

    model: str | os.PathLike | None = None
    build: str | None = None
    argument: Any = None
    min_cosine: float | None = None


@dataclasses.dataclass
class DeployPassResult(ir.passes.PassResult):
    """A pass's result. ``stats``: the pass's own details (JSON-ready: what it changed, its options);
    the typed fields are filled by the contract: ``counts`` by :class:`StructuredPass`, ``variant`` by
    :meth:`DeployPass.__call__`, ``bytes_before``/``bytes_after``/``gate`` by :func:`run_pass_file`."""

    stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    skipped: list[Skip] = dataclasses.field(default_factory=list)
    counts: StructureCounts | None = None
    variant: str | None = None
    bytes_before: int | None = None
    bytes_after: int | None = None
    gate: GateStats | None = None

    def to_dict(self) -> dict[str, Any]:
        """Everything as one flat JSON-ready mapping (the keys ``result.json`` files have always had)."""
        out: dict[str, Any] = dataclasses.asdict(self.counts) if self.counts is not None else {}
        out.update(self.stats)
        if self.variant is not None:
            out["variant"] = self.variant
        if self.bytes_before is not None:
            out.update(bytes_before=self.bytes_before, bytes_after=self.bytes_after)
        if self.gate is not None:
            out.update(self.gate.to_dict())
        return out

    def summary(self) -> str:
        parts = [f"{k}={v}" for k, v in self.to_dict().items() if not isinstance(v, (dict, list))]
        if self.skipped:
            parts.append(f"skipped={len(self.skipped)}")
        return ", ".join(parts)

    def merge(self, other: DeployPassResult) -> None:
        """Take in the result of a later pass of the same pipeline (see :class:`PassSequence`)."""
        self.model = other.model
        self.modified = self.modified or other.modified
        self.stats.update(other.stats)
        self.skipped.extend(other.skipped)
        if other.counts is not None:
            self.counts = other.counts
        if other.variant is not None:
            self.variant = other.variant


class DeployPass(ir.passes.InPlacePass):
    """Base class of deploytool's passes: in place, config-driven, unwrapping DeployErrors.

    Subclasses implement ``call`` and state their preconditions in ``requires`` and their output
    checks in ``ensures`` (see the module doc); the hooks below tell the file runner how to gate,
    name and record the output."""

    def __call__(self, model_or_result: ir.Model | ir.passes.PassResult, /) -> DeployPassResult:
        return self._invoke(model_or_result, canonicalize=True)

    def _invoke(self, model_or_result: ir.Model | ir.passes.PassResult, canonicalize: bool) -> DeployPassResult:
        """The pass, after the canonical rewrites of its input (``canonicalize``; :class:`PassSequence` skips
        them on a model they already ran on, which no pass has modified since)."""
        from deploytool.graph.alibi import compute_alibi_tables
        from deploytool.graph.canonical import canonicalize as canonical_rewrites

        if not isinstance(model_or_result, (ir.Model, ir.passes.PassResult)):  # not an AttributeError from inside
            from deploytool.choices import type_label
            from deploytool.errors import ConfigError

            raise ConfigError(f"{self.name}: expected an onnx_ir Model (onnx_ir.load(path), onnx_ir.from_proto(proto)), "
                              f"got {type_label(model_or_result)}")
        model = model_or_result.model if isinstance(model_or_result, ir.passes.PassResult) else model_or_result
        rewrites: dict[str, int] = {}
        if canonicalize:
            rewrites = canonical_rewrites(model)
            # a whole ALiBi table cut to the sequence (JinaBERT: 3.2 GB in jina-embeddings-v2-base-en's export) as
            # the run-time computation of the same float32 values
            alibi_bytes = compute_alibi_tables(model)
            if alibi_bytes:
                rewrites["alibi_table_bytes_computed"] = alibi_bytes
        try:
            result = super().__call__(model_or_result)
        except (ir.passes.PreconditionError, ir.passes.PostconditionError) as e:
            cause = e.__cause__
            if isinstance(cause, DeployError):
                raise cause from None
            if cause is not None:  # a bug of ours: name it (onnx_ir's own message says only which check failed)
                raise cause from None  # its traceback still runs to where it was raised
            raise
        for key, count in rewrites.items():
            result.stats.setdefault(key, count)
        if result.modified:  # the model now is another variant: say which, in the file itself
            step = self.variant_step(result)
            if step is not None:
                from deploytool.variant import record_step

                props = result.model.metadata_props
                v = record_step(props, **step, fallback_source=_seed_source(result.model))
                result.variant = v.label
        return result  # type: ignore[return-value]

    @property
    def name(self) -> str:
        """How messages name the pass (a pipeline: its main pass): its command's name (``label``), else its class."""
        return getattr(type(self), "label", None) or type(self).__name__

    def requires_input(self, model: ir.Model) -> None:
        """Preconditions that already hold of a pipeline's input, before any preparatory pass runs
        (:class:`PassSequence` checks its main pass's here first, so e.g. ``pack`` refuses a quantized
        model before spending time on an opset upgrade). Default: none."""

    def after_write(self, dst: str | os.PathLike, result: DeployPassResult) -> None:
        """A last contract step once ``dst`` is in place (e.g. fp16 asks this host's ONNX Runtime what it
        runs); it may add details to ``result.stats``. Default: nothing."""

    def variant_step(self, result: DeployPassResult) -> dict[str, Any] | None:
        """How this pass changes the model's variant record (:mod:`deploytool.variant`): ``{"step":
        name, "width_factor": .., "depth_factor": .., "precision": ..}``; None records nothing."""
        return None

    def min_output_cosine(self) -> float | None:
        """For a lossy pass (int8, fp16): the least cosine similarity each float output must keep to
        the input model's on the gate's batch, a bound that only a broken model misses; None: no check."""
        return None

    def input_files(self) -> tuple[str, ...]:
        """The files this pass reads besides its model (an importance file, calibration data, a tokenizer):
        its config's fields that name an existing file. The output may not be any of them."""
        config = getattr(self, "config", None)
        if config is None or not dataclasses.is_dataclass(config):
            return ()
        out = []
        for f in dataclasses.fields(config):
            value = getattr(config, f.name, None)
            if isinstance(value, (str, os.PathLike)) and str(value):
                with contextlib.suppress(OSError, ValueError):
                    if os.path.isfile(value):
                        out.append(os.fspath(value))
        return tuple(out)

    def gate_reference(self, src: str | os.PathLike) -> tuple[str | os.PathLike | bytes, float | None] | None:
        """What the gate compares the output with: (a model path or bytes, the least cosine for a lossy
        pass, or None for equality within the preserve tolerance); None compares nothing. By default
        the input itself, when the pass preserves outputs or names a least cosine."""
        if self.preserves_outputs():
            return src, None
        cosine = self.min_output_cosine()
        return (src, cosine) if cosine is not None else None

    def early_reference(self, src: str | os.PathLike) -> EarlyReference | None:
        """What the gate's process may run as the reference while the pass still runs, in place of
        :meth:`gate_reference` (asked only when this is None): by default the input file itself, where the
        default :meth:`gate_reference` compares with it. A pass that makes its reference (pack) can give a
        builder for the gate's process to call."""
        if type(self).gate_reference is not DeployPass.gate_reference:
            return None
        ref = self.gate_reference(src)
        return EarlyReference(model=src, min_cosine=ref[1]) if ref is not None and ref[0] == src else None

    def gate_counts_casts(self) -> bool:
        """True when the gate is to count the precision casts ORT inserts in its session of the output
        (``result.gate.inserted_casts``): fp16, whose host check would otherwise build a second session."""
        return False

    def gate_done(self) -> None:
        """Called once the gate has run (passed or not): remove what :meth:`gate_reference` made."""

    def gate_session_bytes(self, model: ir.Model) -> int:
        """About the memory ONNX Runtime will newly allocate for the weights of this pass's output when the gate
        loads it (``model``: the input, before the pass runs), for the gate's process to touch while it waits
        (:meth:`deploytool.runtime.verify.GateProcess.warm`); 0 (the default) when it loads them where they
        lie. Only tensors under ``runtime.verify.WARM_TENSOR_LIMIT`` count (bigger ones get fresh memory of their
        own). Only a hint: too little leaves the rest to fault in the session, too much raises the gate's peak."""
        return 0

    #: how the gate's messages name what :meth:`gate_reference` returns
    reference_label = "the input model's"

    def preserves_outputs(self) -> bool:
        """True when the output must compute what the input computes (the file runner's gate then
        compares the two on the same inputs). False unless a pass says otherwise."""
        return False


class PassSequence(DeployPass):
    """Passes run one after another on the same model, as one pass (onnx_ir's "a pipeline of passes is
    itself a pass"). Each sub-pass runs its own ``requires``/``call``/``ensures``; the sequence first
    checks its main pass's :meth:`~DeployPass.requires_input` on the input. The result merges the
    sub-results in order (details, skips; modified if any changed the model). The verification gate
    and messages follow the main pass (``main``: its index, default the first)."""

    def __init__(self, passes, main: int = 0) -> None:
        super().__init__()
        self.passes: list[DeployPass] = list(passes)
        if not self.passes:
            raise ValueError("PassSequence needs at least one pass")
        self.main = self.passes[main]

    @property
    def name(self) -> str:
        return self.main.name

    def requires(self, model: ir.Model) -> None:
        self.main.requires_input(model)

    def call(self, model: ir.Model) -> DeployPassResult:
        result = DeployPassResult(model, modified=False)
        canonical = True  # this sequence's own call made its input canonical
        for p in self.passes:
            # a sub-pass's output may need the rewrites again (the opset upgrade writes Constant nodes): only then
            sub = p._invoke(result.model, canonicalize=not canonical)
            canonical = not sub.modified
            result.merge(sub)
        return result

    # the gate follows the main pass
    def preserves_outputs(self) -> bool:
        return self.main.preserves_outputs()

    def min_output_cosine(self) -> float | None:
        return self.main.min_output_cosine()

    def input_files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f for p in self.passes for f in p.input_files()))

    def gate_reference(self, src):
        return self.main.gate_reference(src)

    def early_reference(self, src):
        return self.main.early_reference(src)

    def gate_counts_casts(self) -> bool:
        return self.main.gate_counts_casts()

    def gate_done(self) -> None:
        self.main.gate_done()

    def gate_session_bytes(self, model: ir.Model) -> int:
        return self.main.gate_session_bytes(model)

    @property
    def reference_label(self) -> str:  # type: ignore[override]
        return self.main.reference_label

    def after_write(self, dst, result) -> None:
        for p in self.passes:
            p.after_write(dst, result)


@dataclasses.dataclass
class Edit:
    """What :meth:`StructuredPass.edit` did: its details, and ``changed`` for a change that the
    per-layer head and neuron counts do not show (a permutation; a slice that rounds to the full model)."""

    stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    changed: bool = False
    skipped: list[Skip] = dataclasses.field(default_factory=list)  # what the pass left as it was, and why


class StructuredPass(DeployPass):
    """The contract of the structured passes (slice, prune-heads, prune-ffn, reorder).

    ``requires`` finds the encoder's structure (:func:`deploytool.graph.find_structure`), refuses a
    model whose projections are quantized or packed and runs the pass's own :meth:`check` on the
    structure, all before anything is touched. ``call`` lets :meth:`edit` change the graph through
    :mod:`deploytool.passes._surgery` and reports the counts before and after (``result.counts``,
    :class:`StructureCounts`) with the edit's details. ``ensures`` checks that every layer kept at least
    one head and one neuron (the per-layer counts it wrote into the metadata).
    """

    #: the pass's name in a variant's chain (:mod:`deploytool.variant`)
    step_name = "structured"

    def __init__(self) -> None:
        super().__init__()
        self._found: tuple[ir.Model, Any] | None = None  # (model, structure) that requires() found

    def edit(self, model: ir.Model, structure) -> Edit:  # pragma: no cover - abstract
        raise NotImplementedError

    def check(self, structure) -> None:
        """The pass's own refusals given the structure (layer or head ids out of range, ...). Default none."""

    def requires(self, model: ir.Model) -> None:
        from deploytool.graph.structure import find_structure
        from deploytool.passes._surgery import check_sliceable

        structure = find_structure(model)
        for layer in structure.layers:
            for lin in layer.linears():
                check_sliceable(lin, f"layer {layer.index}")
        self.check(structure)
        self._found = (model, structure)

    def _structure(self, model: ir.Model):
        from deploytool.graph.structure import find_structure

        found, self._found = self._found, None
        if found is not None and found[0] is model:
            return found[1]
        return find_structure(model)  # call() without requires(): onnx_ir's runner always calls both

    def variant_step(self, result: DeployPassResult) -> dict:
        """Width scales by the heads per layer kept, depth by the layers kept."""
        c = result.counts
        lb, la, hb, ha = c.layers_before, c.layers_after, c.heads_before, c.heads_after
        width = (ha / la) / (hb / lb) if la and lb and hb else 1.0
        return {"step": self.step_name, "width_factor": width, "depth_factor": la / lb if lb else 1.0}

    def call(self, model: ir.Model) -> DeployPassResult:
        from deploytool.passes._surgery import (
            SHARED_EDITS,
            clear_intermediate_shapes,
            count_params,
            layer_counts,
            update_metadata,
        )

        structure = self._structure(model)
        before = layer_counts(structure)
        params_before = count_params(model.graph)
        try:
            done = self.edit(model, structure)
        finally:
            model.graph.meta.pop(SHARED_EDITS, None)
        if not isinstance(done, Edit):
            raise TypeError(f"{type(self).__name__}.edit must return an Edit, not {type(done).__name__}")
        after = layer_counts(structure)
        changed = before != after or done.changed
        if changed:
            # tensors every user now reads an edited copy of (weights shared by layers, as in ALBERT)
            from onnx_ir.passes.common import RemoveUnusedNodesPass

            RemoveUnusedNodesPass()(model)
            clear_intermediate_shapes(model.graph)
            update_metadata(model, after)
        # ORT's transformer optimizer writes com.microsoft nodes without importing the domain
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            if node.domain and node.domain not in model.opset_imports:
                model.opset_imports[node.domain] = 1
        counts = StructureCounts(
            family=structure.family, exporter=structure.exporter,
            layers_before=before["layers"], layers_after=after["layers"],
            heads_before=sum(before["heads"]), heads_after=sum(after["heads"]),
            neurons_before=sum(before["neurons"]), neurons_after=sum(after["neurons"]),
            params_before=params_before, params_after=count_params(model.graph),
            heads_per_layer=after["heads"], neurons_per_layer=after["neurons"])
        return DeployPassResult(model=model, modified=changed, stats=dict(done.stats), counts=counts,
                                skipped=list(done.skipped))

    def ensures(self, model: ir.Model) -> None:
        props = model.metadata_props
        heads = props.get("deploytool.heads_per_layer")
        neurons = props.get("deploytool.ffn_per_layer")
        for what, text in (("head", heads), ("FFN neuron", neurons)):
            if text and any(int(x) < 1 for x in text.split(",")):
                raise VerificationError(f"{self.name} left a layer without a {what} ({text}); nothing written")


def _seed_source(model: ir.Model) -> str:
    return model.graph.name or "model"


def _seed_variant(model: ir.Model, src: str | os.PathLike) -> None:
    """Give a model no deploytool pass has touched its variant record, named after its source (the
    export's ``deploytool.source``, else the input file's name) and with its stored precision."""
    from deploytool.variant import KEY, seed_variant, stored_precision

    props = model.metadata_props
    if KEY in props:
        return
    v = seed_variant(props, Path(src).stem)
    fp16 = any(t.const_value is not None and t.const_value.dtype == ir.DataType.FLOAT16
               for t in model.graph.initializers.values())
    precision = stored_precision(props.get("deploytool.packing"), (n.op_type for n in model.graph), fp16)
    props[KEY] = dataclasses.replace(v, precision=precision).to_json()


# op types of a quantized model (int8 and packed): passes that take fp32 models refuse a model holding one
QUANTIZED_OPS = frozenset({"MatMulInteger", "DynamicQuantizeMatMul", "QAttention", "QLinearMatMul",
                           "DynamicQuantizeLinear", "MatMulNBits", "QuantizeLinear", "MatMulIntegerToFloat"})


def matmul_weight_elements(model: ir.Model) -> int:
    """The entries of ``model``'s 2-D float weights read as a MatMul's or Gemm's second input, those whose int8
    copy is under the gate's warm limit (``runtime.verify.WARM_TENSOR_LIMIT``): what
    :meth:`DeployPass.gate_session_bytes` counts for a pass whose output ONNX Runtime turns into int8 weights of
    its own as it loads it (BERT-base: 85 M)."""
    from deploytool.runtime.verify import WARM_TENSOR_LIMIT

    total = 0
    for v in model.graph.initializers.values():
        c = v.const_value
        if c is not None and c.dtype is ir.DataType.FLOAT and len(c.shape) == 2 and c.size < WARM_TENSOR_LIMIT \
                and any(u.node.op_type in ("MatMul", "Gemm") and u.idx == 1 for u in v.uses()):
            total += c.size
    return total


def swap_in(model: ir.Model, new: ir.Model) -> None:
    """Make ``model`` (in place) the model ``new`` describes, keeping deploytool metadata (a pass whose tool
    returns a whole new model: ORT's quantizer, its fp16 converter)."""
    meta = dict(model.metadata_props)
    model.graph = new.graph
    model.ir_version = new.ir_version
    model.functions.clear()
    model.functions.update(new.functions)
    model.metadata_props.clear()
    model.metadata_props.update(meta)
    model.metadata_props.update(new.metadata_props)


def file_size(path: str | os.PathLike) -> int:
    """Size of an ONNX file including its external data files."""
    from deploytool import onnx_io

    try:
        data_files = onnx_io.external_data_files(path)
    except DeployError:  # unreadable here: the size of the main file is still right
        data_files = []
    return input_bytes(path, data_files)


# inputs above this run the gate in a process of its own (its ONNX Runtime sessions stay out of the
# pass's memory) and get a full garbage collection before writing; small ones stay in process
BIG_MODEL_BYTES = 50_000_000


def run_pass_file(pass_: DeployPass, src: str | os.PathLike, dst: str | os.PathLike, *,
                  verify: bool = True) -> DeployPassResult:
    """The one file runner: load ``src``, apply ``pass_`` (a pass or a :class:`PassSequence`: its
    ``requires``, ``call``, ``ensures``), run ``onnx.checker`` and the ORT gate, save to ``dst``
    atomically, then the pass's :meth:`~DeployPass.after_write`.

    The input file is never modified; ``dst`` appears only if everything succeeded. Fills the result's
    ``bytes_before``/``bytes_after`` and ``gate`` (:class:`GateStats`; for big inputs the gate's process
    and its peak RSS).

    Streaming: the input's weights are memory maps (``onnx_io.load_model``), the pass leaves its edits
    as lazy tensors, and :func:`write_model_checked` computes, writes and drops one tensor at a time,
    so the pass's memory stays near the largest tensor plus the graph, not a multiple of the file.
    Inputs over :data:`BIG_MODEL_BYTES` run the gate in a process of its own
    (:class:`deploytool.runtime.verify.GateProcess`), started as the pass starts: it imports ONNX Runtime
    and, where the pass compares with its input (:meth:`DeployPass.early_reference`), runs the input on
    the gate's feeds while the pass runs and writes; once the output is written it only runs the output
    (and the reference again if the output's feeds differ from the input's). Any error kills it.
    ``verify=False`` skips the gate (see the module doc). The returned result's ``model`` is the output
    model, its big tensors read from ``dst``.
    """
    from deploytool import onnx_io

    import gc

    from deploytool.choices import as_path

    # checked as paths, kept as given (``out/`` names a folder: a Path would drop the slash that says so)
    src, dst = (os.fsdecode(x) if isinstance(x, bytes) else x for x in (src, dst))
    as_path(src, "src"), as_path(dst, "dst")
    if not isinstance(verify, bool):  # verify="no" is true, and verify=None skipped the gate in silence
        from deploytool.choices import kind_of
        from deploytool.errors import ConfigError

        raise ConfigError(f"verify: expected true or false, got {kind_of(verify)}")
    onnx_io.check_output_path(dst, inputs=(src, *pass_.input_files()))
    started: list = []  # the gate's process, once started: closed (killed if still running) whatever happens
    # the collector's automatic runs are paused while the pass runs: each full one walks every object of the
    # process (BERT-base: a 21-23 ms run mid-pass that found 10 objects to free); big models get one
    # collection of the youngest generation before writing, where the pass's garbage is (see _run_pass_file)
    paused = gc.isenabled()
    gc.disable()
    try:
        return _run_pass_file(pass_, src, dst, verify=verify, started=started)
    finally:
        if paused:
            gc.enable()
        for process in started:
            process.close()


def _size(path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:  # the loader says what is wrong with it
        return 0


def _run_pass_file(pass_: DeployPass, src, dst, *, verify: bool, started: list) -> DeployPassResult:
    import gc

    from deploytool import onnx_io

    if verify and _size(src) > BIG_MODEL_BYTES:  # surely big: the process starts before the load
        from deploytool.runtime.verify import GateProcess

        started.append(GateProcess())
    data_files: list[Path] = []
    model = onnx_io.load_model(src, data_files=data_files)
    bytes_before = input_bytes(src, data_files)
    big = bytes_before > BIG_MODEL_BYTES
    process = early = None
    if verify and big:
        from deploytool.runtime.verify import GateProcess, gate_feeds, gate_plan

        if not started:  # big with its external data only
            started.append(GateProcess())
        process = started[0]
        # the input's graph without its weights, before the pass edits anything: the gate's feeds for it
        # (the loader's own, as scanned from a self-contained file, else the model serialized once more)
        skeleton = model.meta.pop(onnx_io.INPUT_SKELETON, None) or onnx_io.skeleton_proto(model)[0]
        try:
            plan = gate_plan(skeleton, src)
        except DeployError:  # the output's plan says so later, if it has the same problem
            plan = None
        early = pass_.early_reference(src) if plan is not None else None
        warm = pass_.gate_session_bytes(model)
        if warm > 0:  # first: the process sets its heap up for it before its reference's thread starts
            process.warm(warm, after_reference=early is not None)
        if early is not None:
            reference, config = early.model, None
            if early.build is not None:  # pack's builder keeps the input's weight types (fake-quantized fp32)
                config = _gate_session_config(skeleton)
            if early.model == src and not data_files:
                view = _input_view(skeleton, model, src, process.folder())
                if view is not None:  # the output's session options rule applies to it too
                    reference, config = view[0], _gate_session_config(view[1])
            process.precompute_reference(gate_feeds(plan), model=reference, build=early.build, src=src,
                                         argument=early.argument, session_config=config)
    _seed_variant(model, src)
    result = pass_(model)
    if not result.modified and not data_files:
        # nothing changed (e.g. width = depth = 1): the output is a byte copy of the input, which
        # computes what the input computes; the gate has nothing of the pass's to run (an input with
        # external data is written out like any output instead: a copy would share its data file)
        import shutil

        gate = GateStats(verified=verify, note="the output is a byte copy of the input" if verify else None)
        with onnx_io.atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
            if verify:  # the copy must run too: an input ONNX Runtime cannot run is refused, not passed on
                seconds, _ = _gate(pass_, onnx_io.skeleton_proto(result.model)[0], src, tmp,
                                   isolate=process is not None, process=process, early=early)
                gate.seconds = round(seconds, 3)
        result.bytes_before = result.bytes_after = bytes_before
        result.gate = gate
        pass_.after_write(dst, result)
        return result
    # passes insert nodes next to where they are needed; the file must list producers first
    result.model.graph.sort()
    out = result.model
    result.model = None  # type: ignore[assignment]
    del model
    if big:  # big models only
        # the runner paused the collector, so what the pass made, its garbage included, is all in the
        # youngest generation: collecting that one frees it without walking the rest of the process (the
        # imports' ~35k objects: a full collection took 25-40 ms here, ~0.3 s with torch loaded)
        gc.collect(0)
        release_free_memory()
    bytes_after, gate = write_model_checked(pass_, out, src, dst, verify=verify, data_files=data_files,
                                            isolate_gate=big, gate_process=process,
                                            early=early if process is not None else None, stats=result.stats)
    result.model = out
    result.bytes_before, result.bytes_after, result.gate = bytes_before, bytes_after, gate
    pass_.after_write(dst, result)
    return result


def write_model_checked(pass_: DeployPass, model: ir.Model, src: str | os.PathLike, dst: str | os.PathLike, *,
                        verify: bool = True, data_files: list[Path] | None = None,
                        isolate_gate: bool = False, gate_process=None,
                        early: EarlyReference | None = None, stats: dict | None = None) -> tuple[int, GateStats]:
    """Write an IR model to ``dst`` streamed (``onnx_io.staged_model``): each tensor is computed, written
    and dropped in turn, then ``onnx.checker`` and the gate run on the temporary file, and only then is
    it renamed to ``dst`` (nothing is left there on failure). ``model``'s big tensors read from ``dst`` afterwards.
    ``isolate_gate``: run the gate in a process of its own (see :func:`run_pass_file`); ``gate_process``:
    a :class:`deploytool.runtime.verify.GateProcess` already started for it (the caller closes it), ``early`` the
    reference it was given to run early (:meth:`DeployPass.early_reference`). ``stats``: a pass result's stats,
    given ``exporter_metadata_bytes_dropped`` where the writer left the exporter's node metadata out
    (:func:`deploytool.onnx_io.strip_exporter_metadata`).
    Returns (bytes written, gate stats)."""
    from deploytool import onnx_io

    gate = GateStats()
    with onnx_io.staged_model(model, dst, inputs=(src,), remap=True,
                              data_files=None if data_files is None else tuple(data_files)) as staged:
        try:
            staged.check()
        except onnx.checker.ValidationError as e:
            _checker_failed(pass_, src, e)
        release_free_memory()
        if verify:
            seconds, report = _gate(pass_, staged.proto, src, staged.path, isolate=isolate_gate or gate_process is not None,
                                    process=gate_process, early=early, staged=staged)
            gate.verified, gate.seconds = True, round(seconds, 3)
            gate.inserted_casts = report.inserted_casts
            gate.input_note = report.reference_note
            if isolate_gate or gate_process is not None:
                gate.process, gate.peak_rss_bytes = "separate", report.peak_rss_bytes
                gate.reference_reused = report.reference_reused
                gate.timeline = report.timeline
                gate.warmed_bytes = report.warmed_bytes
        external = staged.external
        if stats is not None and staged.metadata_dropped:
            stats["exporter_metadata_bytes_dropped"] = staged.metadata_dropped
    bytes_after = Path(dst).stat().st_size
    if external:  # the model file names its final data file now
        locs = {e.value for t in staged.proto.graph.initializer for e in t.external_data if e.key == "location"}
        bytes_after += sum((Path(dst).parent / name).stat().st_size for name in locs)
    return bytes_after, gate


def input_bytes(src: str | os.PathLike, data_files: list[Path]) -> int:
    """Bytes of the ONNX file ``src`` plus its external-data files (``data_files``, as the loader found them)."""
    return os.path.getsize(src) + sum(f.stat().st_size for f in data_files if f.exists())


def _input_rejected_alike(src: str | os.PathLike, error: Exception) -> bool:
    """True when ``onnx.checker`` rejects the input file with the same first line as ``error``."""
    import onnx

    def first(e: Exception) -> str:
        return (str(e).strip().splitlines() or [""])[0]

    try:
        onnx.checker.check_model(str(src), full_check=False)
    except onnx.checker.ValidationError as e:
        return first(e).split(" with domain_version")[0] == first(error).split(" with domain_version")[0]
    except Exception:  # noqa: BLE001 - unreadable here: do not excuse the output
        return False
    return False


def _checker_failed(pass_: DeployPass, src: str | os.PathLike, e: Exception) -> None:
    """``onnx.checker`` rejected a pass's output: a bug in the pass, not bad input (still one line), unless
    the input breaks the same rule (then the ORT gate decides)."""
    if _input_rejected_alike(src, e):
        # e.g. ORT's optimizer writes LayerNormalization into an opset-14 graph: the input
        # breaks the same rule, ORT runs both, and the gate below runs the output
        logger.info("onnx.checker rejects the input the same way (%s); relying on the ORT gate", e)
        return
    _input_does_not_load(src, pass_.name)  # an exporter's invalid graph: the input's fault, said as such
    first = " ".join(str(e).split())[:240]
    raise VerificationError(f"{pass_.name} produced a model onnx.checker rejects ({first}); "
                            f"nothing written") from e


@contextlib.contextmanager
def _gate_view(staged) -> Iterator[Path]:
    """The staged output as the gate loads it (``staged``: :class:`deploytool.onnx_io.Staged`).

    A self-contained file: a small model file beside it, the staged graph whose big tensors are external
    data at their byte ranges inside the staged file, so ONNX Runtime maps the weights where they lie
    instead of parsing and copying the whole protobuf (BERT-base: ~0.1-1 s instead of ~1.7-2.3 s to create
    the session, pass_speed.json's ``gate_sessions``). The graph and the weight bytes are the file's own;
    so that the file's framing is checked too, it is first scanned at the wire level as the loader reads
    it, and every big tensor must lie exactly where the skeleton says (else VerificationError: a writer
    bug). A model with a data file: its own path (ORT maps that already). The view is removed on exit."""
    import tempfile

    from deploytool import onnx_io

    if staged.external or not staged.offsets:
        yield staged.path
        return
    lengths = {}
    proto = onnx.ModelProto()
    proto.CopyFrom(staged.proto)
    for t in proto.graph.initializer:
        if t.name in staged.offsets:
            length = next((int(e.value) for e in t.external_data if e.key == "length"), None)
            lengths[t.name] = length
            onnx_io.refer_to_data(t, staged.path.name, staged.offsets[t.name], length)
    try:  # the loader's own wire-level scan of the written file (reads no weight)
        _, spans = onnx_io._scan_skeleton(staged.path, onnx_io.MappedFile(staged.path))
    except Exception as e:  # noqa: BLE001 - any parse failure is the writer's
        raise VerificationError(f"whose file does not parse ({type(e).__name__}: {e})") from e
    wrong = [n for n, off in staged.offsets.items() if spans.get(n) != (off, lengths[n])]
    if wrong or len(spans) != len(staged.offsets):
        raise VerificationError(f"whose file does not hold its tensors where its graph says "
                                f"({', '.join(wrong[:3]) or 'extra tensors'})")
    held = onnx_io.hold_signals()  # a Ctrl-C between mkstemp and the try would leave the file beside the output
    fd, name = tempfile.mkstemp(prefix=f".{staged.path.name}.", suffix=".gate.onnx", dir=staged.path.parent)
    scratch.made(name)  # removed by the program should this process be killed (deploytool.scratch)
    try:
        onnx_io.release_signals(held)
        with os.fdopen(fd, "wb") as f:
            f.write(proto.SerializeToString())
        yield Path(name)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _input_view(proto, model: ir.Model, src, folder: Path) -> tuple[Path, onnx.ModelProto] | None:
    """The input as the gate's process loads it while the pass runs (:func:`_gate_view`'s reason: ONNX Runtime
    maps the weights instead of parsing and copying the file): ``proto``, the input's skeleton as loaded (a
    copy), in ``folder`` with each big tensor external data at its byte range in ``src`` (through a hard link
    ``input.onnx`` beside it: the input's bytes are not touched), read from ``model``'s maps before the pass
    edits anything. None when a big tensor is not mapped from ``src`` (e.g. a sub-byte type read into
    memory) or the link cannot be made (another file system)."""
    import math

    from deploytool import onnx_io
    from deploytool.onnx_io import MappedTensor

    real = Path(src).resolve()
    for t in proto.graph.initializer:
        v = model.graph.initializers.get(t.name)
        c = v.const_value if v is not None else None
        if isinstance(c, MappedTensor) and Path(c.mapped.path).resolve() == real:
            t.ClearField("raw_data")
            onnx_io.refer_to_data(t, "input.onnx", c.offset, c.length)
        elif t.data_location == onnx.TensorProto.EXTERNAL or (
                math.prod(t.dims) and not (t.raw_data or t.float_data or t.int32_data or t.int64_data
                                           or t.double_data or t.uint64_data or t.string_data)):
            return None  # its data is neither in the skeleton nor mapped from the file
    try:  # a hard link: ONNX Runtime refuses external data reached through a symbolic link out of the folder
        os.link(real, folder / "input.onnx")
    except OSError:  # another file system, or not allowed: the gate's process loads the input itself
        return None
    path = folder / "reference.onnx"
    path.write_bytes(proto.SerializeToString())
    return path, proto


def _gate_session_config(proto) -> dict[str, str] | None:
    """The gate's session options for the output ``proto``: ONNX Runtime's defaults (the graph optimizations
    and constant folding users get, which packed and quantized models rely on), except that a model whose
    weights are all fp32 (or fp16: on a CPU without fp16 kernels ORT casts them to fp32 and runs the same
    fp32 kernels) is not prepacked: the same MatMul kernels run on the weights as mapped, so a one-batch
    check need not copy and repack every weight first (BERT-base: session 0.1 s instead of 0.8-1 s; fp16
    0.45 s instead of 0.8-1.2 s; quantized kernels keep their prepacked path, which can differ from the
    unpacked one)."""
    weights = [t for t in proto.graph.initializer if _nbytes_of(t) > 1024]
    if weights and all(t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16) for t in weights):
        return {"session.disable_prepacking": "1"}
    return None


def _nbytes_of(t) -> int:
    length = next((int(e.value) for e in t.external_data if e.key == "length"), None)
    return length if length is not None else len(t.raw_data)


def _computes_fp16(proto) -> bool:
    """Whether the model computes or rounds in fp16: fp16 weights, an fp16 graph output or a Cast to fp16. Such a
    model (or casts back and forth): a permutation changes summation order and rounding, ~1e-3 of the scale, and
    an fp16 output is rounded to 2^-11 of its value whatever computed it (a pack of an fp16 model computes in fp32
    and casts its output back: one fp16 step, 4.9e-4 of a value near 1, was refused at 1e-4); fp32 models keep the
    tight bound."""
    half = onnx.TensorProto.FLOAT16
    g = proto.graph
    return (any(t.data_type == half for t in g.initializer)
            or any(o.type.tensor_type.elem_type == half for o in g.output)
            or any(n.op_type == "Cast" and any(a.name == "to" and a.i == half for a in n.attribute) for n in g.node))


def _gate(pass_: DeployPass, proto, src: str | os.PathLike, path: Path, *,
          isolate: bool = False, process=None, early: EarlyReference | None = None, staged=None):
    """Run the model saved at ``path`` (``proto``, the output of ``pass_`` on ``src``; its weights need not
    be in it) in ONNX Runtime; VerificationError naming the pass if it fails. ``isolate``: in a process of
    its own (``process``, when one was started with the pass; ``early``, the reference it was given then, is
    used in place of :meth:`DeployPass.gate_reference`). ``staged``: the staged output, loaded through
    :func:`_gate_view`, with :func:`_gate_session_config`'s options. Returns the seconds it took and the
    :class:`~deploytool.runtime.verify.VerifyReport`."""
    import time

    from deploytool.runtime.verify import gate_feeds, gate_plan, verify_model_guarded, verify_model_isolated

    start = time.perf_counter()
    name = pass_.name
    try:
        plan = gate_plan(proto, path)
    except DeployError as e:  # an input the gate cannot make data for: it cannot say the model runs
        raise VerificationError(f"{name} wrote a model the verification gate cannot make inputs for "
                                f"({_strip_path(e, path)}); skip the gate (verify=False, --no-verify) to write it "
                                "unchecked; nothing written") from e
    if process is not None and early is not None:
        reference, cosine = process.EARLY, early.min_cosine
    else:
        try:
            ref = pass_.gate_reference(src)
        except BaseException:  # an error or an interrupt while it was made: what it made so far is removed too
            pass_.gate_done()
            raise
        reference, cosine = ref if ref is not None else (None, None)
    rtol = PRESERVE_RTOL_FP16 if _computes_fp16(proto) else PRESERVE_RTOL
    # small models: in a forked copy of this process, so that ONNX Runtime crashing on the output is a refusal
    run = process.verify if process is not None else verify_model_isolated if isolate else verify_model_guarded
    try:
        with contextlib.ExitStack() as stack:
            config = None
            if staged is not None:
                path = stack.enter_context(_gate_view(staged))
                config = _gate_session_config(proto)
            checks = dict(rtol=rtol, reference_label=pass_.reference_label, session_config=config,
                          count_casts=pass_.gate_counts_casts())
            feeds = gate_feeds(plan)
            try:
                report = run(path, feeds, reference=reference, min_cosine=cosine, **checks)
            except VerificationError as e:
                if e.failure not in ("run", "reference run"):
                    raise
                one_row, why = _input_runs_on_one_row(src, name, plan, feeds)  # InputFileError when on neither
                if one_row is None:  # the input runs on the gate's batch: the output's failure is the pass's
                    raise
                # an export that only runs on one row (torch's opset-23 ModernBERT keeps its rotary caches at
                # batch 1): its output is checked on one row, as the input can be run, and the user is told
                if process is not None and early is not None:  # the early reference ran on the other batch
                    ref = pass_.gate_reference(src)
                    reference, cosine = ref if ref is not None else (None, None)
                again = verify_model_isolated if (isolate or process is not None) else verify_model_guarded
                report = again(path, one_row, reference=reference, min_cosine=cosine, **checks)
                note = (f"checked on a batch of one: the input itself does not run in ONNX Runtime on a batch of "
                        f"{_rows(feeds)} ({why})")
                report = dataclasses.replace(report, reference_note="; ".join(
                    x for x in (note, report.reference_note) if x))  # the reference's own note kept
    except VerificationError as e:
        if e.failure == "load":
            _input_does_not_load(src, name)
        if e.failure == "crash":
            _input_crashes(src, name, plan)
        if e.failure in ("not finite", "reference not finite"):
            _input_not_finite(src, name, plan, e)
        raise VerificationError(f"{name} wrote a model {e}; nothing written", node=e.node, op=e.op,
                                failure=e.failure) from e
    finally:
        pass_.gate_done()
    seconds = time.perf_counter() - start
    logger.info("%s: output verified in ONNX Runtime in %.2f s", name, seconds)
    return seconds, report


def _input_does_not_load(src: str | os.PathLike, name: str) -> None:
    """The output did not load in ONNX Runtime: InputFileError when the input does not load either (an
    exporter's invalid graph, not the pass's doing), so the message names the input's fault."""
    from deploytool.runtime.verify import load_failure

    why = load_failure(src)
    if why is not None:
        raise InputFileError(f"{src}: the input itself does not load in ONNX Runtime ({why}); "
                             f"{name} wrote nothing")


def _input_not_finite(src: str | os.PathLike, name: str, plan, error: VerificationError) -> None:
    """The output's (or the reference's) outputs hold NaN or inf: InputFileError when the input's do too on the
    same batch (NaN or inf in its weights: not the pass's doing), so the message names the input's fault."""
    from deploytool.runtime.verify import gate_feeds, verify_model_guarded

    try:  # the input itself, also where the reference was made from it (pack's)
        verify_model_guarded(src, gate_feeds(plan))
        return  # the input computes numbers: the pass's output (or its reference) is at fault
    except VerificationError as e:
        if e.failure != "not finite":
            return
        error = e
    detail = str(error).split("is not finite", 1)[-1].split(";")[0].strip(" ()")
    raise InputFileError(f"{src}: the input itself computes no numbers (its outputs hold NaN or inf: {detail}; "
                         f"NaN or inf in its weights?); {name} wrote nothing") from None


def _input_crashes(src: str | os.PathLike, name: str, plan) -> None:
    """ONNX Runtime crashed checking the output: InputFileError when it crashes on the input as well (run in a
    forked copy of this process on the same batch), so the message names the input's fault."""
    from deploytool.runtime.verify import crash_cause, gate_feeds, verify_model_guarded

    try:
        verify_model_guarded(src, gate_feeds(plan))
    except VerificationError as e:
        if e.failure == "crash":
            why = crash_cause(e)
            raise InputFileError(f"{src}: ONNX Runtime crashes on the input itself ({why}); {name} wrote "
                                 "nothing") from None
    except DeployError:
        pass


def _rows(feeds) -> int:
    """The batch of ``feeds``: the first dimension of its first input with one (1 when none has)."""
    return next((int(v.shape[0]) for v in feeds.values() if getattr(v, "ndim", 0) > 0), 1)


def _input_runs_on_one_row(src: str | os.PathLike, name: str, plan, feeds):
    """The output (or the input, its reference) did not run in ONNX Runtime on the gate's batch ``feeds`` (made
    from ``plan``): ``(None, None)`` when the input runs on it (the output's failure is the pass's); ``(feeds,
    why)`` with one row's feeds when the input only runs on a batch of one (``why``: ORT's reason on the gate's
    batch); else InputFileError naming the input (an exporter's graph ORT rejects at run time, whatever the
    batch)."""
    from deploytool.runtime.verify import gate_feeds, run_failure

    why = run_failure(src, feeds)
    if why is None:
        return None, None
    if _rows(feeds) > 1:
        one_row = gate_feeds(plan, batch=1)
        if _rows(one_row) == 1 and run_failure(src, one_row) is None:
            return one_row, why
    raise InputFileError(f"{src}: the input itself does not run in ONNX Runtime on the gate's batch ({why}); "
                         f"{name} wrote nothing")


def _strip_path(e: BaseException, path: Path) -> str:
    """The error's message without the temporary file's path it starts with."""
    text = str(e)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text
