"""The verification gate: run a pass's output once in ONNX Runtime before it is written.

:func:`gate_feeds` builds one small padded batch from a model's declared inputs (the same rules as
the benchmark's synthetic inputs, :mod:`deploytool.runtime.inputs`: ids in ``[0, vocab)``,
``attention_mask`` ones, ``token_type_ids`` and other integer inputs zeros), batch 2, sequence 8, the
second row padded after 5 tokens (mask 0, id 0). :func:`verify_model` loads a model (a path or
serialized bytes) in ONNX Runtime with its default session options (what users run, including the
casts it inserts for fp16 and the constant folding packed models rely on), runs it on those feeds
and checks that every float output is finite; with ``reference`` it also runs that model on the same
feeds and requires every output to match within ``max|diff| <= rtol * max(1, max|ref|)``.

A failure raises :class:`deploytool.errors.VerificationError` whose message is a predicate on the
model, e.g. ``ONNX Runtime cannot run: node '/encoder/layer.0/attention/Add' (Add): Attempting to
broadcast an axis by a dimension other than 1. 4 by 2``, so callers can prefix what wrote it; its
``failure`` says what ORT refused (``"load"``, ``"run"``, ``"reference load"``, ``"reference run"``; None when
an output check failed), which callers dispatch on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from deploytool import scratch
from deploytool.errors import DeployError, VerificationError

__all__ = ["GateProcess", "MemoryReference", "VerifyReport", "gate_feeds", "gate_plan", "memory_reference",
           "reference_outputs", "verify_file", "verify_model", "verify_model_guarded", "verify_model_isolated",
           "GATE_BATCH", "GATE_SEQ", "GATE_PADDED_LEN"]

GATE_BATCH = 2
GATE_SEQ = 8
GATE_PADDED_LEN = 5  # real tokens of the second row; the rest is padding
_SEED = 0
_FORK_LOCK = threading.Lock()  # see _fork_copy

# "... while running Reshape node. Name:'/m/Reshape' Status Message: <file>:<line> <signature> <reason>"
_RUN_RE = re.compile(r"running (?P<op>[\w.]+) node\. Name:'(?P<node>[^']*)' Status Message: (?P<reason>.*)", re.S)
# "[ONNXRuntimeError] : 1 : FAIL : Node (/m/query/Add) Op (Add) [ShapeInferenceError] Incompatible dimensions"
_LOAD_RE = re.compile(r"Node \((?P<node>[^)]*)\) Op \((?P<op>[^)]*)\) (?P<reason>.*)", re.S)
# ORT's status prefix, anywhere: a status may wrap another ("Exception during initialization: <where> [..] <why>")
_ORT_STATUS = re.compile(r"\[ONNXRuntimeError\] : \d+ : \w+ : ")
_SOURCE_LOC = re.compile(r"^\S+\.(?:h|hpp|cc|cpp|cu):\d+ ")


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """What the gate ran: feed shapes, output names, the largest difference to the reference (None
    without one) and the seconds it took (session creation included)."""

    feeds: dict[str, tuple[int, ...]]
    outputs: tuple[str, ...]
    max_diff: float | None
    seconds: float
    peak_rss_bytes: int | None = None  # the gate's own process (verify_model_isolated, GateProcess)
    reference_reused: bool | None = None  # GateProcess: the reference's outputs computed early were used
    # count_casts=True: the InsertedPrecisionFreeCast_* nodes that ran (ORT ran those nodes in fp32 on this host)
    inserted_casts: int | None = None
    # GateProcess: seconds from the verify message to each of the process's steps ("reference_done": when
    # its early reference had run, negative when before the message; "reference_built": when a reference the
    # process builds itself was built, before its session and run; "session", "run", "verdict";
    # "warm_done": when it stopped touching memory for the output's session)
    timeline: dict[str, float] | None = None
    warmed_bytes: int | None = None  # GateProcess.warm: the bytes it touched before the output came
    # the reference (the pass's input) did not load in ONNX Runtime with its graph optimizations and ran without
    # them: why, in one line (the user's file fails where ORT optimizes it; the output is what loads)
    reference_note: str | None = None


def _short_reason(status: str, limit: int = 200) -> str:
    """ORT's status message without its source location and C++ signature (one line)."""
    s = " ".join(status.split())
    s = re.sub(r"^Load model from .*? failed:\s*", "", s)  # the caller names the file; the reason follows
    m = _SOURCE_LOC.match(s)
    if m:
        s = s[m.end():]
        head = s.split("(", 1)[0]
        if "::" in head:  # "onnxruntime::ReshapeHelper::ReshapeHelper(const ...&, bool) <reason>"
            depth = 0
            for i, ch in enumerate(s):
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                    if depth == 0:
                        s = s[i + 1:].strip()
                        if s.startswith("const "):
                            s = s[len("const "):]
                        break
        elif re.match(r"[A-Za-z_]\w* ", s):  # "graph.cc:4164 AddInitializedOrtValue <reason>": a bare function name
            s = s.split(" ", 1)[1]
    if " was false. " in s:  # "<condition> was false. <the sentence meant for people>"
        s = s.split(" was false. ", 1)[1]
    s = s.strip() or " ".join(status.split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _ort_failure(verb: str, e: BaseException) -> VerificationError:
    raw = " ".join(str(e).split())
    m = _RUN_RE.search(raw) or _LOAD_RE.search(raw)
    if m:
        where = f"node '{m['node']}' ({m['op']})" if m["node"] else f"an unnamed {m['op']} node"
        return VerificationError(f"ONNX Runtime cannot {verb}: {where}: {_short_reason(m['reason'])}",
                                 node=m["node"] or None, op=m["op"], failure=verb)
    inner = _ORT_STATUS.split(raw)[-1]  # the innermost status says why
    return VerificationError(f"ONNX Runtime cannot {verb}: {_short_reason(inner, 300)}", failure=verb)


@dataclasses.dataclass(frozen=True)
class MemoryReference:
    """A reference model held in memory (:func:`memory_reference`): ``path``, its graph, whose big initializers
    are external data, either in ``placeholder``, an empty file (nothing is ever read from it), with their arrays
    in ``initializers``, which the session uses in place, or in a data file beside ``path``."""

    path: Path
    placeholder: Path
    initializers: dict[str, np.ndarray]


# ONNX Runtime takes these array types as they are (OrtValue from numpy, no conversion)
_ORT_NUMPY = frozenset(np.dtype(t) for t in (np.float32, np.float64, np.float16, np.int8, np.int16, np.int32,
                                             np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.bool_))


def _only_gathered(value) -> bool:
    """True when only Gather nodes read ``value`` (an ``onnx_ir`` value), as their data (an embedding table)."""
    uses = list(value.uses())
    return bool(uses) and not value.is_graph_output() and all(
        u.node.op_type == "Gather" and u.idx == 0 and u.node.domain in ("", "ai.onnx") for u in uses)


class _Slots:
    """At most ``n`` holders at once, and only one until ``widen`` (an event, or None: at once) is set."""

    def __init__(self, n: int, widen) -> None:
        import threading

        self.n, self.widen, self.held = max(1, n), widen, 0
        self.cond = threading.Condition()

    def limit(self) -> int:
        return self.n if self.widen is None or self.widen.is_set() else 1

    def __enter__(self) -> None:
        with self.cond:
            while self.held >= self.limit():
                self.cond.wait(0.005)  # the event does not notify: look again soon
            self.held += 1

    def __exit__(self, *exc) -> None:
        with self.cond:
            self.held -= 1
            self.cond.notify_all()


#: Set in the gate's process (``_gate_worker``): the event of the pass's output arriving. Until then a
#: :func:`memory_reference` built there computes one tensor at a time: the pass runs on the other core (BERT-base
#: pack on 2 cores: with two threads from the start the pass wrote its output 0.1-0.2 s later, and the gate's
#: verdict, 0.1 s sooner, did not make up for it).
output_arrived = None


def memory_reference(model, folder: str | os.PathLike, name: str = "reference", *, threads: int = 2) -> MemoryReference:
    """``model`` (an ``onnx_ir`` model, its big tensors mapped or lazy; the lazy ones are computed here) as a
    :class:`MemoryReference` in ``folder``, made without writing a copy of the model:

    - each big tensor is kept as an array; the session (:func:`reference_outputs`) gets the arrays in place
      (``SessionOptions.add_initializer``, no copy) with graph optimizations and prepacking off, so ONNX Runtime
      neither copies nor repacks them and no optimizer reads a placeholder (were one to, the empty file would
      make it fail, not read zeros);
    - except a table that only Gather nodes read (the word embeddings): it is written first to a data file that
      ONNX Runtime maps, so that only the rows a run gathers enter memory (BERT-base: 94 MB of 436 MB that the
      gate's few ids barely touch: the process's peak stays near the file's size);
    - a tensor type ONNX Runtime cannot take from numpy (bfloat16, sub-byte types) goes into the graph file.

    ``threads``: the kept tensors (and the gathered tables, written by this thread meanwhile) are computed that
    many at a time, in order (numpy releases the GIL); in the gate's process one at a time until the pass's
    output arrives (:data:`output_arrived`): the gate's process builds this while the pass runs on another
    core, but the pass may finish first (BERT-base pack on 2 cores: its output is written ~0.9 s after it
    starts, this build ended 0.2-0.5 s later), and then the cores it leaves are free. The values do not depend
    on it.
    """
    from concurrent.futures import ThreadPoolExecutor

    from deploytool import onnx_io

    folder = Path(folder)
    proto, tensors = onnx_io.skeleton_proto(model, lazy=True)  # nothing computed yet: the pool below does it
    maps = onnx_io.mapped_files(model)

    def drop_maps(_name=None) -> None:  # what was read from the input leaves this process's memory
        for m in maps:
            m.drop()

    values = model.graph.initializers
    tables = {n: t for n, t in tensors.items() if n in values and _only_gathered(values[n])}
    placeholder = folder / f"{name}.placeholder"
    placeholder.write_bytes(b"")
    arrays: dict[str, np.ndarray] = {}
    kept = [t for t in proto.graph.initializer if t.name in tensors and t.name not in tables]
    # the small (lazy) ones last: a weight's codes and scale are computed together (pack's _ComputedOnce),
    # and a scale submitted right after its codes would hold a thread waiting for them
    kept.sort(key=lambda t: tensors[t.name].nbytes <= onnx_io.INLINE_BYTES)
    slots = _Slots(threads, output_arrived)

    def compute(tensor):
        with slots:
            return tensor.numpy()

    pool = ThreadPoolExecutor(max_workers=max(1, threads))
    try:
        futures = [pool.submit(compute, tensors[t.name]) for t in kept]
        if tables:  # meanwhile, in this thread (the pool computes the others)
            with slots:
                onnx_io.write_external(proto, tables, folder / f"{name}.data", after_each=drop_maps)
        for t, future in zip(kept, futures):
            _keep(t, tensors[t.name], future.result(), placeholder, arrays)
            drop_maps()
    finally:
        pool.shutdown(cancel_futures=True)  # on an error: nothing more is started
    path = folder / f"{name}.onnx"
    path.write_bytes(proto.SerializeToString())
    return MemoryReference(path, placeholder, arrays)


def _keep(t, tensor, a, placeholder: Path, arrays: dict[str, np.ndarray]) -> None:
    """Initializer ``t`` (a TensorProto) of :func:`memory_reference`: its array ``a`` (``tensor``'s) kept in
    ``arrays`` with ``t`` a reference to the placeholder, or its bytes in ``t`` when ORT cannot take ``a``."""
    import onnx

    from deploytool.onnx_io import refer_to_data

    if isinstance(a, np.ndarray) and a.dtype in _ORT_NUMPY and a.dtype.byteorder in "=|<":
        arrays[t.name] = np.ascontiguousarray(a)
        refer_to_data(t, placeholder.name, 0, a.nbytes)
    else:
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT
        t.raw_data = tensor.tobytes()


def _session(model: str | os.PathLike | bytes | MemoryReference, session_config: dict[str, str] | None = None,
             profile_prefix: str | None = None, threads: int = 1, optimize: bool = True):
    from deploytool.runtime.infer import make_session

    try:
        if isinstance(model, MemoryReference):  # see memory_reference: its arrays in place, nothing optimized
            config = {**(session_config or {}), "session.disable_prepacking": "1"}
            return make_session(model.path, session_config=config, initializers=model.initializers, optimize=False,
                                priority_order=True)
        return make_session(model, session_config=session_config, profile_prefix=profile_prefix, threads=threads,
                            optimize=optimize)
    except DeployError as e:  # make_session's own message hides the node name in its cause
        if e.__cause__ is None:
            raise
        raise _ort_failure("load", e.__cause__) from e.__cause__


def load_failure(model: str | os.PathLike) -> str | None:
    """Why ONNX Runtime cannot load ``model`` (a file), with its default graph optimizations and without
    them (ORT's reason, e.g. "Type Error: ..."); None when it loads either way. For a pass's failed gate: an output that does not load is the
    input's fault when the input does not load either (torch's opset-11 export of MPNet or DeBERTa-v2:
    "Type Error: Type 'tensor(int64)' of input parameter ... of operator (Add) in node ... is invalid")."""
    for optimize in (True, False):
        try:
            _session(model, optimize=optimize)
            return None
        except DeployError as e:
            reason = str(e)
    # ORT's own words, without the prefixes that repeat what the caller says and the file's path
    return re.sub(r"^ONNX Runtime cannot load: (Load model from .*? failed:)?\s*", "", reason)


def run_failure(model: str | os.PathLike, feeds: dict[str, np.ndarray]) -> str | None:
    """Why ONNX Runtime cannot run ``model`` (a file that loads) on ``feeds`` (ORT's reason: "node 'n' (Op):
    ..."); None when it runs, when it does not load (:func:`load_failure` says that) or takes other inputs than
    ``feeds`` holds. For a pass's failed gate: an output that does not run is the input's fault when the input
    does not run on the same batch either (torch's opset-23 export of ESM: a [batch, 1, 1, S] mask that ONNX's
    Attention rejects)."""
    try:
        sess = _session(model)
    except DeployError:
        return None
    from deploytool.runtime.infer import input_specs

    names = list(input_specs(sess))
    if not set(names) <= set(feeds):
        return None
    try:
        _run(sess, {n: feeds[n] for n in names})
    except VerificationError as e:
        return re.sub(r"^ONNX Runtime cannot run:\s*", "", str(e))
    return None


def _probs_close(a: np.ndarray, r: np.ndarray, tol: float = 0.15, max_classes: int = 32) -> bool:
    """Classifier logits ([..., classes], few classes) whose softmax probabilities differ by at most ``tol``."""
    if a.ndim < 2 or not 2 <= a.shape[-1] <= max_classes or not a.size:
        return False

    def softmax(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    return bool(np.max(np.abs(softmax(a) - softmax(r))) <= tol)


_MAX_FEED_ELEMENTS = 1 << 26  # one input of the gate's batch (64M elements: 512 MB of int64 ids)


def gate_feeds(plan, *, batch: int = GATE_BATCH, seq: int = GATE_SEQ, padded_len: int = GATE_PADDED_LEN
               ) -> dict[str, np.ndarray]:
    """One padded batch for ``plan`` (a :class:`deploytool.runtime.inputs.InputPlan`).

    A fixed dimension 0 or 1 wins over ``batch``/``seq``; symbolic dimensions beyond the second are 1.
    Rows after the first are padded after ``padded_len`` tokens (mask 0, id 0) when there is a mask.
    """
    from deploytool.runtime.inputs import InputPlan, make_feeds

    for spec in plan.inputs:  # a model exported with a fixed batch or sequence length gets it
        if len(spec.shape) > 0 and isinstance(spec.shape[0], int) and spec.shape[0] > 0:
            batch = spec.shape[0]
        if len(spec.shape) > 1 and isinstance(spec.shape[1], int) and spec.shape[1] > 0:
            seq = spec.shape[1]
    fixed = []
    for spec in plan.inputs:
        shape = tuple(d if isinstance(d, int) and d > 0 else batch if i == 0 else seq if i == 1 else 1
                      for i, d in enumerate(spec.shape))
        if math.prod(shape) > _MAX_FEED_ELEMENTS:
            raise DeployError(f"input '{spec.name}' declares the fixed shape {list(shape)}: too big to make a batch "
                              "for (the model cannot be run to check it)")
        fixed.append(dataclasses.replace(spec, shape=shape))
    feeds = make_feeds(InputPlan(inputs=tuple(fixed), vocab=plan.vocab, vocab_source=plan.vocab_source),
                       batch, seq, _SEED)
    mask = feeds.get("attention_mask")
    if mask is not None and mask.ndim == 2 and batch > 1 and 0 < padded_len < seq:
        mask[1:, padded_len:] = 0
        ids = feeds.get("input_ids")
        if ids is not None and ids.shape == mask.shape:
            ids[1:, padded_len:] = 0
    return feeds


def gate_plan(proto, path: str | os.PathLike):
    """The :class:`~deploytool.runtime.inputs.InputPlan` the gate feeds a model (``proto``, its big weights need
    not be in it; ``path`` names it in errors): its declared inputs, and when no embedding table tells the
    vocabulary, ids every vocabulary has (0 and 1). Raises the planner's DeployError for inputs it cannot
    make data for."""
    from deploytool.runtime.inputs import plan_inputs_proto

    plan = plan_inputs_proto(proto, path, require_ids=False)
    if plan.vocab_source == "default":  # no embedding table found: ids every vocabulary has
        plan = dataclasses.replace(plan, inputs=tuple(dataclasses.replace(i, high=min(i.high, 2)) for i in plan.inputs))
    return plan


def _run(sess, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from deploytool.runtime.infer import input_specs

    specs = input_specs(sess)
    missing = [n for n in specs if n not in feeds]
    if missing:
        raise VerificationError(f"ONNX Runtime cannot run: it declares input(s) {', '.join(missing)} the gate "
                                f"has no data for (given: {', '.join(feeds)})", failure="run")
    cast = {n: np.ascontiguousarray(feeds[n].astype(specs[n][0], copy=False)) for n in specs}
    names = [o.name for o in sess.get_outputs()]
    try:
        outs = sess.run(names, cast)
    except Exception as e:
        raise _ort_failure("run", e) from e
    return dict(zip(names, outs))


def _is_float(a: np.ndarray) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind in "fc"


def _dropped_inputs(sess, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Data for the inputs the reference declares and the output does not (``feeds`` are made for the output's
    inputs): an input nothing reads, such as a dynamo export's token_type_ids of a model with no token types,
    which ONNX Runtime's quantizer leaves out. Each gets what the gate gives such an input of any model
    (:func:`deploytool.runtime.inputs.input_kind`, token_type_ids: zeros); the batch and sequence length of a
    symbolic dimension come from the feeds. Ids are never made here (they need the vocabulary)."""
    from deploytool.runtime.infer import input_specs
    from deploytool.runtime.inputs import InputPlan, InputSpec, input_kind, make_feeds

    shapes = [a.shape for a in feeds.values() if getattr(a, "ndim", 0) >= 2]
    batch, seq = shapes[0][:2] if shapes else (1, 1)
    specs = []
    for name, (dtype, shape) in input_specs(sess).items():
        kind = input_kind(name, dtype)
        if name in feeds or kind in (None, "ids"):
            continue
        dims = tuple(d if isinstance(d, int) and d > 0 else batch if k == 0 else seq if k == 1 else 1
                     for k, d in enumerate(shape))
        specs.append(InputSpec(name=name, dtype=dtype.name, shape=dims, kind=kind))
    return make_feeds(InputPlan(inputs=tuple(specs), vocab=0, vocab_source="default"), batch, seq, _SEED) \
        if specs else {}


def reference_outputs(reference: str | os.PathLike | bytes | MemoryReference, feeds: dict[str, np.ndarray],
                      session_config: dict[str, str] | None = None, notes: list[str] | None = None
                      ) -> dict[str, np.ndarray]:
    """The reference model's outputs on ``feeds`` (those of its declared inputs); a failure to load or run it
    is a VerificationError saying the output cannot be compared (not the output's fault). ``reference``: a
    path, serialized bytes, or a :class:`MemoryReference`. ``notes``: gets one line when the reference only
    loaded with ONNX Runtime's graph optimizations off (:attr:`VerifyReport.reference_note`)."""
    try:
        try:
            ref_sess = _session(reference, session_config)
        except VerificationError as e:
            if isinstance(reference, MemoryReference):
                raise
            # an input ONNX Runtime's own optimizer cannot load (ORT level 1 on a static ALBERT: MatMulAddFusion
            # names an initializer the file it saved already has): what it computes, without the optimizer
            ref_sess = _session(reference, session_config, optimize=False)
            if notes is not None:
                notes.append(f"the input does not load in ONNX Runtime with its default graph optimizations ({e}); "
                             "the gate compared with it run without them")
        declared = {i.name for i in ref_sess.get_inputs()}
        return _run(ref_sess, {**_dropped_inputs(ref_sess, feeds), **{k: v for k, v in feeds.items() if k in declared}})
    except VerificationError as e:
        raise VerificationError(f"that cannot be compared with its input (for the input, {e})",
                                failure=None if e.failure is None else f"reference {e.failure}") from e


def verify_model(model: str | os.PathLike | bytes, feeds: dict[str, np.ndarray], *,
                 reference: str | os.PathLike | bytes | None = None, rtol: float = 1e-4,
                 min_cosine: float | None = None, reference_label: str = "the input model's",
                 session_config: dict[str, str] | None = None, count_casts: bool = False,
                 scratch_dir: str | os.PathLike | None = None) -> VerifyReport:
    """Run ``model`` once on ``feeds``: it must load, run and give finite outputs (see module doc).

    With ``reference``, that model must give the same outputs on the same feeds (same names, same
    shapes, ``max|diff| <= rtol * max(1, max|ref|)`` for each), or, with ``min_cosine`` (a lossy
    pass: int8, fp16), float outputs whose cosine similarity to the reference's is at least that.
    ``session_config``: session config entries for ``model``'s session (the reference gets the defaults).
    ``count_casts``: also count the precision casts ORT inserted (the report's ``inserted_casts``, from its
    profiler's record of that one run: no second session), that record written in a temporary folder made in
    ``scratch_dir`` (default: the system's temporary folder). Raises VerificationError.
    """
    notes: list[str] = []
    get_ref = None if reference is None else (lambda: reference_outputs(reference, feeds, notes=notes))
    report = _verify(model, feeds, get_ref, rtol=rtol, min_cosine=min_cosine, reference_label=reference_label,
                     session_config=session_config, count_casts=count_casts, scratch_dir=scratch_dir)
    return dataclasses.replace(report, reference_note=notes[0]) if notes else report


def _refuse_unfinite_reference(ref: dict[str, np.ndarray], reference_label: str) -> None:
    """VerificationError naming the first float output of the reference that is not finite (nothing to compare
    with: the input computes no numbers); nothing when every output is finite."""
    for name, r in ref.items():
        if _is_float(r) and not np.all(np.isfinite(r)):
            raise VerificationError(f"that cannot be checked: {reference_label} output '{name}' is not finite "
                                    f"({int(np.isnan(r).sum())} NaN, {int(np.isinf(r).sum())} inf of {r.size} "
                                    "values; NaN or inf in its weights?)", failure="reference not finite")


def _verify(model, feeds: dict[str, np.ndarray], get_reference, *, rtol: float, min_cosine: float | None,
            reference_label: str, session_config: dict[str, str] | None = None,
            count_casts: bool = False, marks: dict[str, float] | None = None, threads: int = 1,
            scratch_dir: str | os.PathLike | None = None) -> VerifyReport:
    """:func:`verify_model` with the reference's outputs from ``get_reference()`` (None: no reference), asked
    for only once the output has loaded, run and given finite values (the gate's process may have them
    already, see :class:`GateProcess`). ``marks``: filled with the ``time.monotonic()`` at which the output's
    session was made ("session") and had run ("run"). ``threads``: the output session's intra-op threads.
    ``scratch_dir``: where the profiler's folder of ``count_casts`` is made (a process that may be killed mid-run
    is given its caller's folder, which the caller removes: a folder of its own would stay behind)."""
    start = time.perf_counter()
    marks = {} if marks is None else marks
    casts = None
    # count_casts: the profiler's record of this one run goes to a temporary folder
    with (scratch.temporary_directory("deploytool-gate-profile-", dir=scratch_dir) if count_casts
          else contextlib.nullcontext()) as tmp:
        sess = _session(model, session_config, profile_prefix=os.path.join(tmp, "gate") if tmp else None,
                        threads=threads)
        marks["session"] = time.monotonic()
        outs = _run(sess, feeds)
        marks["run"] = time.monotonic()
        if count_casts:
            casts = _inserted_casts_in_profile(sess.end_profiling())
    del sess
    for name, a in outs.items():
        if _is_float(a) and not np.all(np.isfinite(a)):
            n_nan = int(np.isnan(a).sum())
            n_inf = int(np.isinf(a).sum())
            if get_reference is not None:  # the input computing no numbers either is the input's fault: said so
                _refuse_unfinite_reference(get_reference(), reference_label)
            raise VerificationError(f"whose output '{name}' is not finite ({n_nan} NaN, {n_inf} inf of {a.size} "
                                    f"values on a padded batch {_shape_text(feeds)})", failure="not finite")
    worst: float | None = None
    if get_reference is not None:
        ref = get_reference()  # the reference itself failing is not the output's fault, but nothing can be compared
        if set(ref) != set(outs):
            raise VerificationError(f"whose outputs ({', '.join(outs)}) are not {reference_label} "
                                    f"({', '.join(ref)}), though the pass must preserve them")
        worst = 0.0
        for name, r in ref.items():
            a = outs[name]
            if a.shape != r.shape:
                raise VerificationError(f"whose output '{name}' has shape {list(a.shape)}, {reference_label} "
                                        f"{list(r.shape)}, though the pass must preserve it")
            if not (_is_float(a) or _is_float(r)):
                if not np.array_equal(a, r):
                    raise VerificationError(f"whose output '{name}' differs from {reference_label}, though the "
                                            "pass must preserve it")
                continue
            if _is_float(r) and not np.all(np.isfinite(r)):  # nothing to compare with: the input computes no numbers
                _refuse_unfinite_reference({name: r}, reference_label)
            r64, a64 = r.astype(np.float64), a.astype(np.float64)
            if min_cosine is not None:
                cos = float(np.dot(a64.ravel(), r64.ravel()) /
                            (np.linalg.norm(a64) * np.linalg.norm(r64) + 1e-30)) if a.size else 1.0
                worst = max(worst, 1.0 - cos)
                diff = float(np.max(np.abs(a64 - r64))) if a.size else 0.0
                scale = max(1.0, float(np.max(np.abs(r64))) if r.size else 0.0)
                # both must fail: near-zero outputs (an untrained classifier's logits) have a noisy cosine;
                # a classifier's few logits are also judged by what they mean, their probabilities (the gate's
                # random ids are far from text: a width-0.75 MiniLM's int8 logits moved 0.25 there, 0.10 in
                # probability, and its test accuracy 76.19% -> 76.11%)
                if not cos >= min_cosine and not diff <= 0.1 * scale and not _probs_close(a64, r64):
                    raise VerificationError(f"whose output '{name}' has cosine {cos:.4f} to {reference_label} "
                                            f"(at least {min_cosine} expected of this precision) and differs by "
                                            f"{diff:.3g} ({diff / scale:.0%} of its scale)")
                continue
            diff = float(np.max(np.abs(a64 - r64))) if a.size else 0.0
            allowed = rtol * max(1.0, float(np.max(np.abs(r64))) if r.size else 0.0)
            worst = max(worst, diff)
            if not diff <= allowed:
                raise VerificationError(f"whose output '{name}' differs from {reference_label} by {diff:.3g} "
                                        f"(allowed {allowed:.3g}), though the pass must preserve outputs")
    return VerifyReport(feeds={k: tuple(v.shape) for k, v in feeds.items()}, outputs=tuple(outs), max_diff=worst,
                        seconds=time.perf_counter() - start, inserted_casts=casts)


def _inserted_casts_in_profile(path: str) -> int:
    """The distinct ``InsertedPrecisionFreeCast_*`` nodes ORT's profiler saw run (its JSON at ``path``): the
    nodes :func:`deploytool.runtime.session.inserted_precision_casts` finds in the optimized model, those
    that constant folding removed excepted, as there."""
    import json

    from deploytool.runtime.session import CAST_PREFIX

    with open(path) as f:
        events = json.load(f)
    names = {e.get("name", "").removesuffix("_kernel_time") for e in events
             if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")}
    return sum(1 for n in names if n.startswith(CAST_PREFIX))


def encode_feeds(feeds: dict[str, np.ndarray]) -> dict[str, dict]:
    """Feeds as JSON (dtype, shape, base64 of the bytes): the gate's process gets them on its stdin."""
    import base64

    return {k: {"dtype": v.dtype.str, "shape": list(v.shape),
                "data": base64.b64encode(np.ascontiguousarray(v).tobytes()).decode("ascii")} for k, v in feeds.items()}


def decode_feeds(data: dict[str, dict]) -> dict[str, np.ndarray]:
    """The arrays :func:`encode_feeds` encoded."""
    import base64

    return {k: np.frombuffer(base64.b64decode(d["data"]), dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()
            for k, d in data.items()}


#: :meth:`GateProcess.warm`: tensors ONNX Runtime allocates at this size or above come from fresh mappings
#: of their own, not from the heap the process warmed (glibc's largest mmap threshold, which the worker sets)
WARM_TENSOR_LIMIT = 32 << 20


def gate_threads(limit: int = 4) -> int:
    """The threads the gate's process gives the output's session once the pass has written it: the cores this
    process may run on (:func:`~deploytool.runtime.machine.usable_cores`), at most ``limit`` (more add thread
    start-up to a one-batch run)."""
    from deploytool.runtime.machine import usable_cores

    return max(1, min(int(limit), usable_cores()))


def _fork_copy() -> int:
    """``os.fork()`` for the gate's copies of this process (:func:`verify_model_guarded`'s and
    :class:`GateProcess`'s): one thread at a time (``catch_warnings`` saves and restores the process's warning
    filters: two gates overlapping in two threads left the ignore below in place for good), silent on Python 3.12+
    (it warns of a fork in a process with OS threads: numpy's OpenBLAS pool, which OpenBLAS makes again in a
    forked child, ONNX Runtime's, which the copy's own sessions do not use); in the copy the caller's fault
    handler is off (its death is reported by the caller in one line, not as pytest's traceback dump), and a fault
    signal sent before that waits until it is. OSError as ``os.fork``."""
    import faulthandler
    import signal
    import warnings

    faults = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}
    with _FORK_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, faults)
        try:
            pid = os.fork()
            if pid == 0:
                faulthandler.disable()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return pid


def gate_may_fork() -> bool:
    """Whether :class:`GateProcess` may run its worker in a forked copy of this process rather than a fresh
    interpreter: where :func:`fork_is_safe`, from the main thread of a process with no other Python thread (a
    thread's lock held at the fork would stay held in the copy for good; ONNX Runtime's own native threads do
    not matter: the copy makes sessions of its own, as :func:`verify_model_guarded`'s copy does)."""
    return fork_is_safe() and threading.current_thread() is threading.main_thread() and threading.active_count() == 1


class _ForkedWorker:
    """The gate's worker (``_gate_worker.serve_forked``) in a forked copy of this process, with the part of
    :class:`subprocess.Popen` that :class:`GateProcess` uses (``pid``, ``stdin``, ``poll``, ``kill``, ``wait``,
    ``returncode``). The copy has every module this process imported (numpy, onnx, onnx-ir, the pass's own
    code: a fresh interpreter spent 0.3-0.4 s of a core importing them again, while the pass, on the other core,
    did the same work); it imports ONNX Runtime itself. ``result_w``: the pipe it writes its answer to; its
    stdout and stderr go to ``log``."""

    def __init__(self, log, result_w: int) -> None:
        import signal
        import sys

        parent = os.getpid()
        r, w = os.pipe()
        for stream in (sys.stdout, sys.stderr):  # nothing buffered here is written again by the copy
            with contextlib.suppress(Exception):
                stream.flush()
        try:
            pid = _fork_copy()
        except BaseException:
            os.close(r)
            os.close(w)
            raise
        if pid == 0:
            code = 1
            try:
                os.close(w)  # else its input never ends
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # not the caller's handlers
                    signal.signal(sig, signal.SIG_DFL)
                from deploytool.runtime import _gate_worker

                code = _gate_worker.serve_forked(parent, r, result_w)
            except BaseException:  # noqa: BLE001 - the parent reads the exit and the log
                import traceback

                with contextlib.suppress(Exception):
                    traceback.print_exc()
                    sys.stderr.flush()
            finally:
                os._exit(code)
        os.close(r)
        self.pid = pid
        self.returncode: int | None = None
        self.stdin = os.fdopen(w, "wb")

    def _reaped(self, status: int) -> int:
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): gone
                self.returncode = 0
                return 0
            if pid:
                return self._reaped(status)
        return self.returncode

    def kill(self) -> None:
        import signal

        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        if timeout is not None:  # as Popen.wait: TimeoutExpired if it has not ended by then
            import subprocess

            deadline = time.monotonic() + timeout
            while self.poll() is None:
                if time.monotonic() >= deadline:
                    raise subprocess.TimeoutExpired(f"the gate's process {self.pid}", timeout)
                time.sleep(0.005)
        if self.returncode is None:
            try:
                return self._reaped(os.waitpid(self.pid, 0)[1])
            except ChildProcessError:
                self.returncode = 0
        return self.returncode


class GateProcess:
    """The verification gate's own Python process (``deploytool.runtime._gate_worker``), started before the
    model it will check exists: its start and the import of ONNX Runtime, and with
    :meth:`precompute_reference` the reference model's session and outputs, happen while the caller still
    runs its pass; :meth:`verify` then only has the output's session to create and run. A forked copy of this
    process where that is safe (:func:`gate_may_fork`; ``fork=False``: always a fresh interpreter), so that
    what this process imported is not imported again.

    A context manager: leaving it (an error included) kills the process if it still runs and waits for it,
    so none outlives its caller; the process also dies with its parent (``PR_SET_PDEATHSIG``). Its stdout
    and stderr go to an anonymous temporary file (nothing named on disk); a reference given as bytes or built
    by the process is written to a temporary folder removed on close. One :meth:`verify` per process."""

    def __init__(self, *, fork: bool | None = None) -> None:
        import subprocess
        import sys

        self._tmp: str | None = None
        self._timed_out: float | None = None
        self._log = tempfile.TemporaryFile()
        if fork is None:
            fork = gate_may_fork()
        r, w = os.pipe()
        try:
            if fork:
                self._proc = _ForkedWorker(self._log, w)
            else:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "deploytool.runtime._gate_worker", str(os.getpid()), str(w)],
                    stdin=subprocess.PIPE, stdout=self._log, stderr=self._log, pass_fds=(w,))
        except BaseException:
            os.close(r)
            os.close(w)
            self._log.close()
            raise
        os.close(w)
        self._result_fd: int | None = r

    def __enter__(self) -> GateProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _send(self, msg: dict) -> bool:
        """Write one message; False when the process is gone (its result says why)."""
        import json

        try:
            self._proc.stdin.write((json.dumps(msg) + "\n").encode())
            self._proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    #: ``verify(reference=GateProcess.EARLY)``: the reference given to :meth:`precompute_reference`
    EARLY = "@early"

    def precompute_reference(self, feeds: dict[str, np.ndarray], *, model: str | os.PathLike | None = None,
                             build: str | None = None, src: str | os.PathLike | None = None, argument=None,
                             session_config: dict[str, str] | None = None) -> None:
        """Let the process run a reference on ``feeds`` now: the file ``model``, or the one that ``build``
        (``"module:function"``, called there as ``function(src, folder, argument)``, returning the path of
        what it wrote into ``folder``, a temporary folder of this object's, or a :class:`MemoryReference`) makes. :meth:`verify` with
        ``reference=GateProcess.EARLY`` reuses its outputs when its feeds hold the same arrays (else it runs
        that reference again on its own feeds). ``session_config``: session config entries for the reference."""
        import base64
        import pickle

        msg: dict = {"op": "reference", "feeds": encode_feeds(feeds), "session_config": session_config}
        if build is not None:
            msg.update(build=build, src=str(Path(src).resolve()), folder=str(self.folder()),
                       argument=base64.b64encode(pickle.dumps(argument)).decode("ascii"))
        elif model is not None:
            msg["model"] = str(Path(model).resolve())
        else:
            raise ValueError("precompute_reference needs a model or a build")
        self._send(msg)

    def warm(self, nbytes: int, *, after_reference: bool = False) -> None:
        """Let the process touch about ``nbytes`` of fresh memory (less when the machine has less available)
        while it waits, after its early reference has run, and stop as soon as the output comes. Freed again,
        the pages stay in the process's heap, where the output's session takes them: ONNX Runtime allocates the
        weights it converts or prepacks (an fp16 model's fp32 copies: BERT-base 437 MB, 107k page faults at
        0.1-0.9 s on this project's VMs) into memory that no longer faults in the session's own time. Only
        tensors under :data:`WARM_TENSOR_LIMIT` take it: a pass counts those alone.
        Without it the session faults those pages in itself; nothing else differs.

        Called before anything else is sent; ``after_reference``: wait for the reference that
        :meth:`precompute_reference` is about to ask for (else it begins at once)."""
        self._send({"op": "warm", "bytes": int(nbytes), "after_reference": bool(after_reference)})

    def folder(self) -> Path:
        """A temporary folder of this object's (removed on :meth:`close`), for what its process is to read."""
        self._tmp = self._tmp or scratch.mkdtemp("deploytool-gate-")
        return Path(self._tmp)

    def verify(self, model: str | os.PathLike | bytes, feeds: dict[str, np.ndarray], *,
               reference: str | os.PathLike | bytes | None = None, rtol: float = 1e-4,
               min_cosine: float | None = None, reference_label: str = "the input model's",
               timeout: float | None = None, session_config: dict[str, str] | None = None,
               count_casts: bool = False, threads: int | None = None) -> VerifyReport:
        """:func:`verify_model` in the process: the same checks and errors. The report carries the process's
        peak resident set and whether an early reference was reused.

        ``threads``: the intra-op threads of the output's session there (None: :func:`gate_threads`). The
        caller only waits for the answer, so the cores its pass used are free (BERT-base on 2 cores, one
        thread -> two: fp16's session and run 0.33 -> 0.26 s, a sliced output's run 0.05 -> 0.03 s; the
        outputs are compared with a tolerance, and ONNX Runtime splits a MatMul's rows and columns among
        threads, not its sums)."""
        import json

        start = time.perf_counter()
        sent = time.monotonic()
        if isinstance(reference, (bytes, bytearray)):
            path = self.folder() / "reference.onnx"
            path.write_bytes(reference)
            reference = path
        if isinstance(model, (bytes, bytearray)):  # a serialized model: the process loads it from a file
            path = self.folder() / "model.onnx"
            path.write_bytes(model)
            model = path
        self._send({"op": "verify", "model": str(Path(model).resolve()), "feeds": encode_feeds(feeds),
                    "reference": None if reference is None else reference if reference == self.EARLY
                    else str(Path(reference).resolve()),
                    "rtol": rtol, "min_cosine": min_cosine, "reference_label": reference_label,
                    "session_config": session_config, "count_casts": count_casts,
                    # the profiler's record goes in this object's folder: removed by close() even if the process
                    # is killed before it removes it itself
                    "scratch_dir": str(self.folder()) if count_casts else None,
                    "threads": gate_threads() if threads is None else int(threads)})
        line = self._read_result(timeout)
        if line is None:
            if self._proc.poll() is None:  # no answer in time
                self._proc.kill()
            self._proc.wait()
            code, why = self._proc.returncode, self._why()
            self.close()
            if self._timed_out is None and code is not None and code < 0:
                # a death by a signal this object did not send (a timeout's kill): ONNX Runtime crashing on the
                # model, or the OOM killer: the forked gate's words and "crash" (callers ask whether the input does too)
                raise crash_error(-code, feeds)
            raise VerificationError(f"that the verification gate's process could not check ({why})")
        out = json.loads(line)
        if not out.get("ok"):
            raise VerificationError(out.get("error") or "that the verification gate refused", node=out.get("node"),
                                    op=out.get("op"), failure=out.get("failure"))
        return VerifyReport(feeds={k: tuple(v.shape) for k, v in feeds.items()}, outputs=tuple(out.get("outputs", ())),
                            max_diff=out.get("max_diff"), seconds=time.perf_counter() - start,
                            peak_rss_bytes=out.get("peak_rss_bytes"), reference_reused=out.get("reference_reused"),
                            inserted_casts=out.get("inserted_casts"), warmed_bytes=out.get("warmed_bytes"),
                            reference_note=out.get("reference_note"),
                            timeline={k: round(v - sent, 3) for k, v in (out.get("marks") or {}).items()} or None)

    def _read_result(self, timeout: float | None) -> str | None:
        """The process's one result line, or None if it ended (or ``timeout`` passed) without one."""
        import select

        with contextlib.suppress(OSError, ValueError):
            self._proc.stdin.close()  # nothing more to say: an end of input if it waits for more
        deadline = None if timeout is None else time.monotonic() + timeout
        buf = b""
        while not buf.endswith(b"\n"):
            if deadline is not None:
                ready, _, _ = select.select([self._result_fd], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    self._timed_out = timeout
                    return None
            chunk = os.read(self._result_fd, 1 << 16)
            if not chunk:
                return None
            buf += chunk
        return buf.decode()

    def _why(self) -> str:
        if self._timed_out is not None:
            return f"no answer within {self._timed_out:g} s"
        code = self._proc.returncode
        tail = ""
        with contextlib.suppress(OSError, ValueError):
            self._log.seek(0)
            tail = " ".join(self._log.read().decode(errors="replace").split())[-300:]
        if code is not None and code < 0:  # a signal: a crash in ONNX Runtime's native code, or the OOM killer
            name, what = _death(-code)
            return f"{what}, {name}" + (f": {tail}" if tail else "")
        return f"exit {code}" + (f": {tail}" if tail else "")

    def close(self) -> None:
        """Kill the process if it still runs, wait for it, and remove what it was given."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        with contextlib.suppress(OSError, ValueError):
            self._proc.stdin.close()
        if self._result_fd is not None:
            os.close(self._result_fd)
            self._result_fd = None
        if self._tmp is not None:
            scratch.remove(self._tmp)
            self._tmp = None
        self._log.close()


def _death(signum: int) -> tuple[str, str]:
    """(the signal's name, what it means for a process checking a model with ONNX Runtime)."""
    from deploytool.errors import SIGNAL_KINDS, signal_name

    name = signal_name(signum)
    kind = SIGNAL_KINDS.get(name)
    return name, ("ONNX Runtime aborted" if name == "SIGABRT" else "killed (out of memory?)" if name == "SIGKILL"
                  else f"ONNX Runtime crashed ({kind})" if kind else f"killed by {name}")


def crash_error(signum: int, feeds: dict[str, np.ndarray]) -> VerificationError:
    """The refusal for a gate (a forked copy or a process of its own) that died of signal ``signum`` checking a model
    on ``feeds``: ``failure="crash"``; :func:`crash_cause` reads the cause back from its message."""
    name, what = _death(signum)
    return VerificationError(f"that the verification gate could not check: {what}, {name}, loading or running it "
                             f"on a padded batch {_shape_text(feeds)}", failure="crash")


def crash_cause(error: VerificationError) -> str:
    """``"ONNX Runtime crashed (segmentation fault), SIGSEGV"`` from a :func:`crash_error` (wrapped in more words
    or not)."""
    text = str(error)
    head = "the verification gate could not check: "
    return text[text.index(head) + len(head):].split(", loading or running it")[0] if head in text else text


#: :func:`verify_model_guarded`: how long its copy of the process may take before it is killed
GUARD_TIMEOUT_S = 900.0


def fork_is_safe() -> bool:
    """Whether :func:`verify_model_guarded` may check in a forked copy of this process: where there is a fork,
    except on macOS, where a forked child of a process that has used the system's libraries crashes in them
    (numpy's BLAS there is Accelerate, whose libdispatch thread pool does not survive a fork: ``np.dot`` in such a
    child dies of SIGSEGV, numpy/numpy#5752 and skyfielders/python-skyfield#1024; CPython's multiprocessing
    spawns rather than forks there since 3.8 for this reason). A crash of the copy would then be read as ONNX
    Runtime crashing on the model. ``DEPLOYTOOL_NO_FORK`` (:func:`deploytool.settings.no_fork`) also says no."""
    import sys

    from deploytool import settings

    return hasattr(os, "fork") and sys.platform != "darwin" and not settings.no_fork()


def verify_model_guarded(model: str | os.PathLike | bytes, feeds: dict[str, np.ndarray], *,
                         timeout: float = GUARD_TIMEOUT_S, fork: bool | None = None, **checks) -> VerifyReport:
    """:func:`verify_model` in a forked copy of this process (POSIX): ONNX Runtime dying on the model (a
    segmentation fault or an abort while it builds or runs the session, as ORT 1.32 did on some fp16 graphs; the
    OOM killer) becomes a VerificationError naming the signal, instead of the end of the caller's process (a
    notebook's kernel, a service): a library caller of a pass gets what the ``deploytool`` program's own
    supervision gives a command. The copy shares this process's memory copy-on-write (no interpreter start, no
    import: a few ms); its ONNX Runtime sessions and their memory end with it. ``timeout``: seconds before a copy
    that has not answered is killed (refused, as a gate that could not check). Where a fork is not safe
    (:func:`fork_is_safe`: macOS) the checks run in a fresh Python process (:func:`verify_model_isolated`: an
    interpreter start and ONNX Runtime's import more, the same errors, a crash there also ``"crash"``); in this
    process where there is no fork at all (Windows), or with ``fork=False`` (``fork=None``, the default: unless
    ``DEPLOYTOOL_NO_FORK`` is set, :func:`deploytool.settings.no_fork`; ``fork=True`` ignores it). The copy
    does not outlive this call: an exception while it waits (^C, a SIGTERM handler's SystemExit) kills it, and
    it dies with this process should that be killed outright (Linux)."""
    import pickle
    import select
    import signal
    import sys

    from deploytool import settings

    if fork is None:
        fork = not settings.no_fork()
    if not hasattr(os, "fork") or not fork:
        return verify_model(model, feeds, **checks)
    if sys.platform == "darwin":  # POSIX where a forked copy is not safe (fork_is_safe): a fresh process
        return verify_model_isolated(model, feeds, timeout=timeout, **checks)
    if checks.get("count_casts") and checks.get("scratch_dir") is None:
        # the profiler's folder is made in one of this process's, removed here: the copy may die before it
        # removes its own (a crash in ONNX Runtime, a timeout's kill), which stayed behind in /tmp
        with scratch.temporary_directory("deploytool-gate-") as folder:
            return verify_model_guarded(model, feeds, timeout=timeout, fork=True, **checks, scratch_dir=folder)
    parent = os.getpid()
    r, w = os.pipe()
    try:
        pid = _fork_copy()  # a copy that hangs is killed at ``timeout``
    except OSError:  # no process left to make: check here
        os.close(r)
        os.close(w)
        return verify_model(model, feeds, **checks)
    if pid == 0:  # the copy: run the checks, send back what came of them, end without the caller's exit handlers
        code = 0
        try:
            _die_with(parent)
            os.close(r)
            try:
                out = ("report", verify_model(model, feeds, **checks))
            except VerificationError as e:
                out = ("refused", str(e), e.node, e.op, e.failure)
            except DeployError as e:
                out = ("deploy", str(e))
            except BaseException as e:  # noqa: BLE001 - handed to the caller, which raises it as its own
                out = ("error", f"{type(e).__name__}: {e}")
            data = pickle.dumps(out)
            view = memoryview(data)
            while view:
                view = view[os.write(w, view):]
        except BaseException:  # noqa: BLE001 - nothing to report to: the caller sees no answer
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    timed_out = ended = False
    try:
        while True:
            ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        ended = True
    finally:
        os.close(r)
        if not ended:
            # left by an exception, an interrupt (^C, or SIGTERM of this process alone: the copy did not get it):
            # the copy goes too, rather than be waited for until it finishes (up to ``timeout``, or for ever)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        raise VerificationError(f"that the verification gate could not check (no answer within {timeout:g} s)")
    if os.WIFSIGNALED(status):
        raise crash_error(os.WTERMSIG(status), feeds)
    if not chunks:
        raise VerificationError(f"that the verification gate could not check (its process ended with exit "
                                f"{os.WEXITSTATUS(status)} and no answer)")
    out = pickle.loads(b"".join(chunks))  # written by this very program's copy above
    if out[0] == "report":
        return out[1]
    if out[0] == "refused":
        raise VerificationError(out[1], node=out[2], op=out[3], failure=out[4])
    if out[0] == "deploy":
        raise DeployError(out[1])
    raise RuntimeError(f"the verification gate failed: {out[1]}")


def _die_with(parent: int) -> None:
    """In a forked copy of process ``parent``: be killed when the thread that forked it ends (Linux's
    ``PR_SET_PDEATHSIG``, as the gate's own process is), so that a caller killed outright (SIGKILL, the OOM killer),
    whose clean-up never runs, does not leave its copy checking on; the copy ends at once if it is gone already."""
    import signal

    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() != parent:
        os._exit(1)


def verify_model_isolated(model: str | os.PathLike | bytes, feeds: dict[str, np.ndarray], *,
                          reference: str | os.PathLike | bytes | None = None, rtol: float = 1e-4,
                          min_cosine: float | None = None, reference_label: str = "the input model's",
                          timeout: float | None = None, session_config: dict[str, str] | None = None,
                          count_casts: bool = False) -> VerifyReport:
    """:func:`verify_model` in a fresh Python process (:class:`GateProcess`): the same checks and errors,
    while the ONNX Runtime sessions' memory stays out of this process. The report carries the gate
    process's peak resident set (``peak_rss_bytes``)."""
    start = time.perf_counter()
    with GateProcess() as g:
        report = g.verify(model, feeds, reference=reference, rtol=rtol, min_cosine=min_cosine,
                          reference_label=reference_label, timeout=timeout, session_config=session_config,
                          count_casts=count_casts)
    return dataclasses.replace(report, seconds=time.perf_counter() - start)


def _shape_text(feeds: dict[str, np.ndarray]) -> str:
    ids = feeds.get("input_ids", next(iter(feeds.values()), None))
    return "x".join(str(d) for d in ids.shape) if ids is not None else "?"


def verify_file(path: str | os.PathLike, *, reference: str | os.PathLike | None = None,
                rtol: float = 1e-4) -> VerifyReport:
    """:func:`verify_model` of an ONNX file with :func:`gate_feeds` built from its declared inputs."""
    from deploytool.runtime.inputs import plan_inputs_proto
    from deploytool.onnx_io import load_proto

    p = Path(path)
    plan = plan_inputs_proto(load_proto(p, load_external_data=False), p, require_ids=False)
    feeds = gate_feeds(plan)
    try:
        return verify_model(p, feeds, reference=reference, rtol=rtol)
    except VerificationError as e:
        first = e
    one = {k: v[:1] for k, v in feeds.items()}
    n = len(next(iter(feeds.values()), ()))
    if first.failure in ("run", "reference run") and n > 1:
        # as the pass runner's gate: a model ONNX Runtime runs on a batch of one only (torch's opset-23 ModernBERT:
        # rotary caches of batch 1) is checked on one row, and the report says so
        try:
            report = verify_model(p, one, reference=reference, rtol=rtol)
        except VerificationError:
            pass
        else:
            note = f"checked on a batch of one: it does not run in ONNX Runtime on a batch of {n} ({first})"
            return dataclasses.replace(report, reference_note="; ".join(x for x in (report.reference_note, note) if x))
    raise VerificationError(f"{p}: a model {first}", node=first.node, op=first.op, failure=first.failure) from first
