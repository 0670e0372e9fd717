"""Streaming passes (issue #17 item 1): what could break when weights are memory maps written one by one.

- a loaded model reads its weights through maps of the input and a streamed save writes the same
  tensors as ``onnx.load`` + ``onnx.save`` (self-contained and with one data file), input untouched;
- external data in -> external data out: the output gets its own data file, the input's files keep
  their bytes, and the output computes what the self-contained slice computes;
- a failure while writing (a tensor that cannot be computed) leaves nothing behind;
- a truncated input is one line (InputFileError), not a traceback;
- fp16 conversion: deploytool's ``to_float16`` is bit-identical to ORT's ``convert_np_to_float16``;
- memory: a pass run in a fresh process on a ~200 MB BERT-shaped file (slice, pack, fp16) peaks at
  most 1.5x the file above what the process held after its imports (no timing is asserted: speed
  lives in benchmarks/pass_speed.py).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import numpy_helper

from deploytool import onnx_io
from deploytool.errors import InputFileError
from deploytool.passes.slice_subnetwork import SliceConfig, slice_file

SHAPE = dict(layers=2, hidden=64, heads=4, ffn=128)


@pytest.fixture(scope="module")
def src(tiny_onnx):
    return tiny_onnx("bert", exporter="torch", **SHAPE)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _arrays(path: Path) -> dict[str, np.ndarray]:
    proto = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}


def test_mapped_load_and_streamed_save_keep_every_tensor(src, tmp_path):
    before = _digest(src)
    model = onnx_io.load_model(src)
    mapped = [v for v in model.graph.initializers.values() if isinstance(v.const_value, onnx_io.MappedTensor)]
    assert mapped, "big initializers should be memory maps of the input"
    assert all(v.const_value.mapped.path == Path(src) for v in mapped)
    want = _arrays(src)
    one = onnx_io.save_streamed(model, tmp_path / "one.onnx")
    ext = onnx_io.save_streamed(model, tmp_path / "ext.onnx", external=True)
    assert not onnx_io.external_data_files(one)
    assert [p.name for p in onnx_io.external_data_files(ext)] == ["ext.onnx.data"]
    onnx.checker.check_model(str(one))
    for path in (one, ext):
        got = _arrays(path)
        assert got.keys() == want.keys()
        for name, arr in want.items():
            assert got[name].dtype == arr.dtype and np.array_equal(got[name], arr), name
    # and back: external in -> self-contained out
    again = onnx_io.save_streamed(onnx_io.load_model(ext), tmp_path / "again.onnx")
    assert all(np.array_equal(_arrays(again)[k], v) for k, v in want.items())
    assert _digest(src) == before


def _external_copy(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    proto = onnx.load(str(src))
    dst = folder / "model.onnx"
    onnx.save_model(proto, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=1024)
    return dst


def test_external_in_external_out_leaves_the_input_data_untouched(src, tmp_path, monkeypatch):
    from deploytool.runtime.infer import run_onnx
    from deploytool.runtime.verify import gate_feeds
    from deploytool.bench.inputs import plan_inputs_proto

    inp = _external_copy(src, tmp_path / "in")
    digests = {p.name: _digest(p) for p in inp.parent.iterdir()}
    plain_out = tmp_path / "plain.onnx"
    slice_file(src, plain_out, SliceConfig(width=0.5, depth=0.5))
    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_BYTES", 0)  # every output "over" the limit
    dst = tmp_path / "in" / "sliced.onnx"
    result = slice_file(inp, dst, SliceConfig(width=0.5, depth=0.5))
    assert result.gate.verified
    assert [p.name for p in onnx_io.external_data_files(dst)] == ["sliced.onnx.data"]
    assert {p.name: _digest(p) for p in inp.parent.iterdir() if p.name in digests} == digests
    # the output data file is 4 KiB-aligned per tensor, and computes what the self-contained slice does
    proto = onnx.load(str(dst), load_external_data=False)
    offsets = [int(e.value) for t in proto.graph.initializer for e in t.external_data if e.key == "offset"]
    assert offsets and all(o % onnx_io.DATA_ALIGN == 0 for o in offsets)
    feeds = gate_feeds(plan_inputs_proto(onnx.load(str(plain_out)), plain_out, require_ids=False))
    a, b = run_onnx(plain_out, feeds), run_onnx(dst, feeds)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    # the returned model reads its weights from the output, not the input
    for v in result.model.graph.initializers.values():
        if isinstance(v.const_value, onnx_io.MappedTensor):
            assert v.const_value.mapped.path.name == "sliced.onnx.data"


def test_failed_streamed_write_leaves_nothing(src, tmp_path):
    model = onnx_io.load_model(src)
    name, v = next((n, v) for n, v in model.graph.initializers.items()
                   if isinstance(v.const_value, onnx_io.MappedTensor))
    t = v.const_value

    def broken():
        raise RuntimeError("cannot compute this tensor")

    v.const_value = ir.LazyTensor(broken, dtype=t.dtype, shape=t.shape, name=name)
    out = tmp_path / "out"
    out.mkdir()
    for external in (False, True):
        with pytest.raises(RuntimeError, match="cannot compute"):
            onnx_io.save_streamed(model, out / "m.onnx", external=external)
        assert list(out.iterdir()) == []


def test_truncated_input_is_one_line(src, tmp_path):
    data = Path(src).read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputFileError) as e:
        slice_file(bad, tmp_path / "out.onnx", SliceConfig(width=0.5))
    assert "\n" not in str(e.value) and "truncated.onnx" in str(e.value)
    assert not (tmp_path / "out.onnx").exists()


def _mapped_here(path: Path) -> bool:
    name = str(Path(path).resolve())
    with open("/proc/self/maps") as f:
        return any(line.rstrip("\n").endswith(name) for line in f)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads this process's maps from /proc")
def test_a_map_no_longer_used_is_unmapped_without_a_collection(src, tmp_path):
    """Sizing or scanning a file leaves no map of it once the call returns, even with the garbage collector
    off: a map held until a collection pins a deleted file's pages (a benchmark's parent that sized each
    output kept every one of them, and the passes it ran next slowed round by round)."""
    import gc

    copy = tmp_path / "sized.onnx"
    copy.write_bytes(Path(src).read_bytes())
    gc.collect()
    gc.disable()
    try:
        assert onnx_io.external_data_files(copy) == []
        assert not _mapped_here(copy)
        # a map that is still in use keeps its pages droppable by its budget, and is unmapped once let go
        budget = onnx_io.MapBudget(limit=1)
        mapped = onnx_io.MappedFile(copy, budget)
        assert _mapped_here(copy) and list(budget.files) == [mapped]
        mapped.view(0, 16)  # over the budget: drops what was read, the map stays usable
        assert bytes(mapped.view(0, 4)) == Path(copy).read_bytes()[:4]
        del mapped
        assert not _mapped_here(copy) and not list(budget.files)
    finally:
        gc.enable()


def test_unnamed_trailing_outputs_are_written_as_read(tmp_path):
    """The writer keeps each node's outputs as the file had them, unnamed trailing ones included (onnx_ir's
    serializer drops those; ORT's shape inference of EmbedLayerNormalization then refuses ``["emb"]``), for any op,
    not a table of them: a LayerNormalization ``["y", "", ""]`` and an EmbedLayerNormalization ``["emb", ""]``
    come back as they were; a node with every output named is untouched."""
    from onnx import TensorProto, helper

    ms = "com.microsoft"
    f = TensorProto.FLOAT
    inits = [numpy_helper.from_array(np.full(s, 0.1, np.float32), n) for n, s in
             (("word", (10, 4)), ("pos", (8, 4)), ("seg", (2, 4)), ("g", (4,)), ("b", (4,)))]
    nodes = [helper.make_node("EmbedLayerNormalization", ["ids", "types", "word", "pos", "seg", "g", "b"],
                              ["emb", ""], domain=ms),
             helper.make_node("LayerNormalization", ["emb", "g", "b"], ["y", "", ""], axis=-1),
             helper.make_node("Split", ["y"], ["s0", "s1"], axis=-1, num_outputs=2),
             helper.make_node("Add", ["s0", "s1"], ["out"])]
    ins = [helper.make_tensor_value_info(n, TensorProto.INT32, [1, 3]) for n in ("ids", "types")]
    g = helper.make_graph(nodes, "g", ins, [helper.make_tensor_value_info("out", f, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(ms, 1)])
    proto, _ = onnx_io.skeleton_proto(ir.serde.deserialize_model(m))
    assert [list(n.output) for n in proto.graph.node] == [["emb", ""], ["y", "", ""], ["s0", "s1"], ["out"]]
    # and the plain serializer does drop them (else this test tests nothing)
    plain = ir.serde.serialize_model(ir.serde.deserialize_model(m))
    assert [list(n.output) for n in plain.graph.node][:2] == [["emb"], ["y"]]


def test_to_float16_is_ort_convert_np_to_float16():
    from onnxruntime.transformers.float16 import convert_np_to_float16

    from deploytool.passes.fp16 import to_float16

    rng = np.random.default_rng(0)
    a = (rng.standard_normal(200_000) * np.exp(rng.uniform(-25, 15, 200_000))).astype(np.float32)
    a[:11] = [0, -0.0, np.nan, np.inf, -np.inf, 5.96e-08, -5.96e-08, 65504, -65504, 1e-9, -7e4]
    for lo, hi in ((5.96e-08, 65504.0), (1e-7, 1e4)):
        want = convert_np_to_float16(a, lo, hi)
        got = to_float16(a.reshape(400, 500), lo, hi)
        assert got.shape == (400, 500) and got.dtype == np.float16
        np.testing.assert_array_equal(got.reshape(-1).view(np.uint16), want.view(np.uint16))


def test_to_float16_fixes_clamped_values_anywhere():
    """The fast path casts whole tensors and redoes only the values the clamping changes: put such values
    in chunks far from the first, next to ordinary ones, for bounds at and inside float16's range."""
    from onnxruntime.transformers.float16 import convert_np_to_float16

    from deploytool.passes.fp16 import to_float16

    rng = np.random.default_rng(1)
    a = (rng.standard_normal(300_000) * 0.02).astype(np.float32)
    special = np.array([1e-9, -1e-9, 3e-8, -3e-8, 7e4, -7e4, 65519, 1e6, np.nan, np.inf, -np.inf, 0, -0.0,
                        5e-7, 2e4, -9e3], np.float32)
    where = rng.choice(a.size, size=(20, special.size), replace=False)
    for row in where:
        a[row] = special
    a[-1] = 1e-9  # the last, short chunk too
    for lo, hi in ((5.96e-08, 65504.0), (1e-7, 1e4), (1e-6, 100.0)):
        want = convert_np_to_float16(a, lo, hi)
        got = to_float16(a, lo, hi)
        np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


# ------------------------------------------------------------------------------------ memory

_WORKER = r"""
import json, sys
from deploytool.passes import transform
from deploytool.passes.fp16 import Fp16Config
from deploytool.passes.pack_weights import PackConfig
from deploytool.passes.slice_subnetwork import SliceConfig

def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

cfg = {"slice": SliceConfig(width=0.5, depth=1.0), "pack": PackConfig(weights="ternary"),
       "fp16": Fp16Config(check_host=False)}[sys.argv[1]]
base = rss("VmRSS")
res = transform(sys.argv[2], sys.argv[3], cfg)
print(json.dumps({"imports": base, "peak": rss("VmHWM"), "gate": res.gate.peak_rss_bytes,
                  "verified": res.gate.verified}))
"""


@pytest.fixture(scope="module")
def big_file(tiny_onnx):
    # ~200 MB: vocab 60000 x 512 embeddings (123 MB) and 4 layers of 512 x 2048 FFNs
    path = tiny_onnx("bert", exporter="torch", layers=4, hidden=512, heads=8, ffn=2048, vocab=60000, max_pos=128)
    assert path.stat().st_size > 150_000_000
    return path


@pytest.mark.slow
@pytest.mark.parametrize("pass_name", ["slice", "pack", "fp16"])
def test_pass_memory_stays_near_the_file(big_file, tmp_path, pass_name):
    size = big_file.stat().st_size
    before = _digest(big_file)
    p = subprocess.run([sys.executable, "-c", _WORKER, pass_name, str(big_file), str(tmp_path / "out.onnx")],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["verified"] and r["gate"], r  # the gate ran, in its own process (input over 50 MB)
    # the pass's own memory above its imports: the non-streaming code needed 1.3-8x the file here
    assert r["peak"] - r["imports"] <= 1.5 * size, (r, size)
    assert _digest(big_file) == before


@pytest.mark.parametrize("n", [1, 3, 4, 5, 8, 4099])
def test_int2_bytes_are_onnx_irs(n):
    """The writer's own 2-bit packer gives ``ir.Tensor.tobytes``'s bytes (onnx_ir's packer is the reference)."""
    import onnx_ir as ir

    from deploytool.onnx_io import _tensor_buffer

    rng = np.random.default_rng(n)
    for dtype, lo, hi, np_type in ((ir.DataType.INT2, -2, 2, np.int8), (ir.DataType.UINT2, 0, 4, np.uint8)):
        t = ir.Tensor(rng.integers(lo, hi, (n,)).astype(np_type), dtype=dtype)
        assert bytes(memoryview(_tensor_buffer(t)).cast("B")) == t.tobytes()
        t2 = ir.Tensor(rng.integers(lo, hi, (2, n)).astype(np_type), dtype=dtype)
        assert bytes(memoryview(_tensor_buffer(t2)).cast("B")) == t2.tobytes()


def test_packed_result_reads_int2_weights_lazily_from_the_output(src, tmp_path):
    """The returned model's INT2 weights are the output's packed bytes where they lie (unpacked only when asked,
    not into memory as it is written), and hold what onnx_ir's own loader reads from the file."""
    import onnx_ir as ir

    from deploytool.passes.pack_weights import PackConfig, pack_file

    dst = tmp_path / "packed.onnx"
    result = pack_file(src, dst, PackConfig(weights="ternary"))
    want = {n: v.const_value for n, v in ir.load(str(dst)).graph.initializers.items()
            if v.const_value is not None and v.const_value.dtype is ir.DataType.INT2}
    got = {n: v.const_value for n, v in result.model.graph.initializers.items()
           if v.const_value is not None and v.const_value.dtype is ir.DataType.INT2}
    assert want and set(got) == set(want)
    big = [n for n, t in got.items() if t.nbytes > onnx_io.INLINE_BYTES]  # the rest stay in the graph skeleton
    assert big
    for name, t in got.items():
        assert isinstance(t, ir.PackedTensor) or name not in big
        if name in big:  # over the file's map: its packed bytes, no copy
            assert isinstance(t.raw, np.ndarray) and not t.raw.flags.owndata and not t.raw.flags.writeable
        np.testing.assert_array_equal(np.asarray(t.numpy()).astype(np.int8), np.asarray(want[name].numpy()).astype(np.int8))
        assert tuple(t.shape) == tuple(want[name].shape)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_runner_leaves_the_collector_as_it_found_it(src, tmp_path, enabled):
    """The file runner pauses the garbage collector's automatic runs while a pass runs and restores the
    caller's setting afterwards, after a success and after a refusal alike."""
    import gc

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        slice_file(src, tmp_path / "ok.onnx", SliceConfig(width=0.5))
        assert gc.isenabled() is enabled
        with pytest.raises(InputFileError):
            slice_file(tmp_path / "missing.onnx", tmp_path / "bad.onnx", SliceConfig(width=0.5))
        assert gc.isenabled() is enabled and not (tmp_path / "bad.onnx").exists()
    finally:
        (gc.enable if was else gc.disable)()


# ------------------------------------------------------------------------------ replacing an existing output


def _wait_until_gone(folder: Path, pattern: str = ".*.old", limit: float = 20.0) -> list[str]:
    import time

    deadline = time.monotonic() + limit
    while (left := sorted(p.name for p in folder.glob(pattern))) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_a_pass_run_again_onto_its_output_replaces_it_and_removes_the_old_file(src, tmp_path, monkeypatch):
    """The old output (external data too) is renamed aside and removed by a detached process: the new files
    are in place, readers of the old one keep reading it, and nothing is left behind."""
    import subprocess

    monkeypatch.setattr(onnx_io, "DEFERRED_REMOVAL_BYTES", 1)  # the tiny model's files count as big
    real_run, removals = subprocess.run, []

    def run(argv, **kwargs):  # what replace_file spawns, recorded and run
        removals.append(argv[-1])
        return real_run(argv, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "s.onnx"
    slice_file(src, dst, SliceConfig(width=0.5, depth=1.0))
    old_bytes = dst.read_bytes()
    with open(dst, "rb") as reader:  # a reader of the old output (ONNX Runtime maps it the same way)
        slice_file(src, dst, SliceConfig(width=0.75, depth=1.0))
        assert reader.read() == old_bytes  # its file lives on while open, unlinked
    assert dst.read_bytes() != old_bytes
    assert _arrays(dst).keys() == _arrays(onnx_io.save_streamed(onnx_io.load_model(dst), tmp_path / "x.onnx")).keys()
    assert len(removals) == 1 and Path(removals[0]).name.startswith(".s.onnx.")
    assert _wait_until_gone(out) == []
    assert sorted(p.name for p in out.iterdir()) == ["s.onnx"]
    # external data in and out: the data file is replaced the same way
    ext = out / "e.onnx"
    for width in (0.5, 0.75):
        onnx_io.save_streamed(onnx_io.load_model(src), ext, external=True)
        slice_file(ext, out / "e2.onnx", SliceConfig(width=width, depth=1.0))
    # the second round replaced e.onnx, its data file and e2.onnx (self-contained: the slice is small)
    assert sorted(Path(r).name[1:].rsplit(".", 2)[0] for r in removals[1:]) == ["e.onnx", "e.onnx.data", "e2.onnx"]
    assert _wait_until_gone(out) == []
    assert sorted(p.name for p in out.iterdir()) == ["e.onnx", "e.onnx.data", "e2.onnx", "s.onnx"]


def test_replace_file_puts_the_old_file_back_when_the_new_one_cannot_take_its_name(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_io, "DEFERRED_REMOVAL_BYTES", 1)
    final, new = tmp_path / "m.onnx", tmp_path / ".m.onnx.tmp"
    final.write_bytes(b"old")
    new.write_bytes(b"new")
    real = onnx_io.os.replace

    def failing(a, b):
        if Path(a) == new:
            raise PermissionError(13, "Permission denied")
        return real(a, b)

    monkeypatch.setattr(onnx_io.os, "replace", failing)
    with pytest.raises(PermissionError):
        onnx_io.replace_file(new, final)
    assert final.read_bytes() == b"old" and new.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.onnx.tmp", "m.onnx"]


def test_replace_file_leaves_other_links_and_small_files_to_a_plain_replace(tmp_path, monkeypatch):
    """A hard-linked old file keeps its other name's content; a symlink is replaced, not its target; a file
    under the threshold is replaced in place (no rename aside: nothing spawned)."""
    monkeypatch.setattr(onnx_io, "DEFERRED_REMOVAL_BYTES", 1)
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(b"old")
    import os

    os.link(a, b)
    (tmp_path / "n1").write_bytes(b"new")
    onnx_io.replace_file(tmp_path / "n1", a)
    assert a.read_bytes() == b"new" and b.read_bytes() == b"old"
    target, link = tmp_path / "target.onnx", tmp_path / "link.onnx"
    target.write_bytes(b"kept")
    link.symlink_to(target)
    (tmp_path / "n2").write_bytes(b"new")
    onnx_io.replace_file(tmp_path / "n2", link)
    assert not link.is_symlink() and link.read_bytes() == b"new" and target.read_bytes() == b"kept"
    monkeypatch.setattr(onnx_io, "DEFERRED_REMOVAL_BYTES", 1 << 30)
    import subprocess

    spawned = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: spawned.append(a))
    (tmp_path / "n3").write_bytes(b"newer")
    onnx_io.replace_file(tmp_path / "n3", a)
    assert a.read_bytes() == b"newer" and spawned == []
    assert not list(tmp_path.glob(".*.old"))


def test_replace_file_removes_what_an_earlier_replace_left_aside_once_it_is_an_orphan(tmp_path, monkeypatch):
    """A file renamed aside whose removal never ran (the process killed between the renames) goes with the next
    replace of the same name, big or small, once it has kept its aside name ORPHAN_AGE_S; a younger one (another
    writer between its renames), other names and other outputs' files stay."""
    names = [".m.onnx.0123456789ab.old", ".m.onnx.zz.old", ".n.onnx.0123456789ab.old", "m.onnx.0123456789ab.old"]
    for name in names:
        (tmp_path / name).write_bytes(b"left")
    (tmp_path / "m.onnx").write_bytes(b"old")
    (tmp_path / "new").write_bytes(b"new")
    onnx_io.replace_file(tmp_path / "new", tmp_path / "m.onnx")  # every file is seconds old: nothing removed
    assert _wait_until_gone(tmp_path, ".m.onnx.0123456789ab.old", limit=0.5) == [".m.onnx.0123456789ab.old"]
    monkeypatch.setattr(onnx_io, "ORPHAN_AGE_S", -1.0)
    for big in (False, True):
        monkeypatch.setattr(onnx_io, "DEFERRED_REMOVAL_BYTES", 1 if big else 1 << 30)
        (tmp_path / ".m.onnx.0123456789ab.old").write_bytes(b"left")
        (tmp_path / "new").write_bytes(b"newer")
        onnx_io.replace_file(tmp_path / "new", tmp_path / "m.onnx")
        assert _wait_until_gone(tmp_path, ".m.onnx.0123456789ab.old") == []
        assert (tmp_path / "m.onnx").read_bytes() == b"newer"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:] + ["m.onnx"])


def test_a_pass_removing_two_heads_writes_a_smaller_file_without_restating_its_initializers(src, tmp_path):
    """The serializer wrote a value_info for every initializer (its own type and dims again, ~45 bytes each): a
    prune of two heads of this tiny model wrote a bigger file than it read. Entries that say something else
    (an intermediate value's shape, a type that is not the initializer's) are kept."""
    from deploytool.passes.prune_heads import HeadPruneConfig, prune_heads_file

    dst = tmp_path / "p.onnx"
    prune_heads_file(src, dst, HeadPruneConfig(heads={0: [0, 1]}))
    assert dst.stat().st_size < src.stat().st_size
    out = onnx.load(str(dst))
    inits = {t.name for t in out.graph.initializer}
    assert inits and not [v.name for v in out.graph.value_info if v.name in inits]
    g = onnx.helper.make_graph(
        [], "g", [], [],
        [numpy_helper.from_array(np.zeros((2, 3), np.float32), n) for n in ("w", "odd")],
        value_info=[onnx.helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [2, 3]),
                    onnx.helper.make_tensor_value_info("odd", onnx.TensorProto.FLOAT16, [2, 3]),
                    onnx.helper.make_tensor_value_info("mid", onnx.TensorProto.FLOAT, ["b", 3])])
    onnx_io._drop_initializer_value_info(g)
    assert [v.name for v in g.value_info] == ["odd", "mid"]


def test_a_file_without_its_weights_is_one_line_not_a_warning_per_name(src, tmp_path):
    """The tiny BERT with its initializers deleted (a file saved without its weights): every reader refuses it in
    one line naming the first node that reads a missing name; onnx_ir logged one warning per name first, and
    inspect described the empty graph with exit 0."""
    m = onnx.load(str(src))
    n_weights = len(m.graph.initializer)
    del m.graph.initializer[:]
    bad = tmp_path / "noweights.onnx"
    onnx.save(m, str(bad))
    for lazy in (True, False):
        with pytest.raises(InputFileError, match=r"node '.+' \(\w+\) reads '.+', which no input, initializer or "
                                                 rf"node of the graph gives \(and {n_weights - 1} more names\)"):
            onnx_io.load_model(bad, lazy=lazy)
    for argv in (["inspect", str(bad)], ["slice", str(bad), "--width", "0.5", "-o", str(tmp_path / "o.onnx")]):
        r = subprocess.run([sys.executable, "-m", "deploytool", *argv], capture_output=True, text=True, timeout=120)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-2000:]
        assert "the file is incomplete" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noweights.onnx"]


def test_external_data_files_answers_for_the_file_as_it_is_now(src, tmp_path, monkeypatch):
    """The data files an ONNX file names are scanned once per version of the file (a pass asks again after its
    load): a file written again at the same path, self-contained then with a data file, gets its new answer, and
    a link to it from another folder its own (locations are relative to the path given)."""
    import os

    path = tmp_path / "m.onnx"
    model = onnx_io.load_model(src)
    onnx_io.save_streamed(model, path)
    onnx_io.load_model(path)  # the load's scan answers the next question
    with monkeypatch.context() as m:
        m.setattr(onnx_io, "_scan_skeleton", None)  # not scanned again
        assert onnx_io.external_data_files(path) == []
    onnx_io.save_streamed(onnx_io.load_model(src), path, external=True)  # replaced (atomically) by one with data
    assert [p.name for p in onnx_io.external_data_files(path)] == ["m.onnx.data"]
    assert onnx_io.external_data_files(path) == [tmp_path / "m.onnx.data"]
    other = tmp_path / "elsewhere"
    other.mkdir()
    os.symlink(path, other / "m.onnx")
    assert onnx_io.external_data_files(other / "m.onnx") == [(other / "m.onnx.data").absolute()]
