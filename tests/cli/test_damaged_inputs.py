"""Damaged and doctored inputs, and outputs that are not plain files, found by fuzzing the commands (2026-12-05):
each is one ``error:`` line and exit 2 (it was exit 1 "internal error", an exit 0, or the input's data replaced),
nothing is written, and the input keeps its bytes.

Each case is one small edit of a tiny BERT export, made here with the ``onnx`` package; the commands run as a user
runs them (``deploytool`` in a subprocess).
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import onnx
import pytest


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploytool", *args], capture_output=True, text=True, timeout=300)


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def seed(tiny_onnx):
    return Path(tiny_onnx("bert", exporter="torch", layers=2, hidden=32, heads=4, ffn=64))


def _first_weight(m: onnx.ModelProto) -> onnx.TensorProto:
    names = {i for n in m.graph.node if n.op_type == "MatMul" for i in n.input}
    return next(t for t in m.graph.initializer if t.name in names and len(t.dims) == 2)


def _short(m):
    t = _first_weight(m)
    t.raw_data = t.raw_data[:100]


def _negative(m):
    t = _first_weight(m)
    t.dims[:] = [-d for d in t.dims]


def _undefined(m):
    _first_weight(m).data_type = 0


def _two_writers(m):
    mm = [n for n in m.graph.node if n.op_type == "MatMul"]
    mm[1].output[0] = mm[0].output[0]


def _cycle(m):
    # the first MatMul reads the graph's last node's output: a value that depends on itself
    first = next(n for n in m.graph.node if n.op_type == "MatMul")
    first.input[0] = m.graph.node[-1].output[0]


def _output_twice(m):
    m.graph.output.append(m.graph.output[0])


def _transposed_ffn(m):
    # an FFN input weight stored the other way round: the file no longer describes a model that runs
    ws = [t for t in m.graph.initializer if len(t.dims) == 2 and sorted(t.dims) == [32, 64]]
    import numpy as np
    from onnx import numpy_helper

    t = ws[0]
    a = numpy_helper.to_array(t)
    t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(a.T), t.name))


def _huge_dims(m):
    for i in m.graph.input:
        for d in i.type.tensor_type.shape.dim:
            d.dim_value = 10 ** 12


EDITS = {"raw_data shorter than its dims": (_short, "holds 100 bytes"),
         "negative dims": (_negative, "negative dimensions"),
         "undefined element type": (_undefined, "undefined or unknown element type"),
         "two nodes write one value": (_two_writers, "written by two nodes"),
         "a cycle": (_cycle, "cycle"),
         "an output listed twice": (_output_twice, "listed twice"),
         "an FFN weight the other way round": (_transposed_ffn, "FFN output reads"),
         "input dims of 10^12": (_huge_dims, "too big")}


COMMANDS = {"slice": ["slice", "--width", "0.5"], "prune-ffn": ["prune-ffn", "--keep", "0.5"],
            "fp16": ["quantize", "--fp16"], "int8": ["quantize", "--int8"]}
# (weight passes do not read the FFN's wiring: on the transposed FFN weight ONNX Runtime refuses the file, the
# gate's own line, whose words are ORT's)
CASES = [(e, c) for e in EDITS for c in COMMANDS
         if not (e == "an FFN weight the other way round" and c in ("fp16", "int8"))]


@pytest.mark.parametrize("edit,name", CASES, ids=[f"{c}-{e}" for e, c in CASES])
def test_a_doctored_input_is_one_line_and_exit_2(seed, tmp_path, edit, name):
    fn, words = EDITS[edit]
    command = COMMANDS[name]
    m = onnx.load(str(seed))
    fn(m)
    bad = tmp_path / "bad.onnx"
    onnx.save(m, bad)
    before = _sha(bad)
    r = _run(*command, str(bad), "-o", str(tmp_path / "out.onnx"))
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), (r.returncode, r.stderr)
    if command[0] != "quantize" or edit not in ("input dims of 10^12",):
        assert words in lines[0], lines[0]
    assert not (tmp_path / "out.onnx").exists() and _sha(bad) == before


def test_nan_weights_are_refused_in_one_line_without_numpy_warnings(seed, tmp_path):
    import numpy as np
    from onnx import numpy_helper

    m = onnx.load(str(seed))
    t = _first_weight(m)
    a = numpy_helper.to_array(t).copy()
    a[0, :3] = [np.nan, np.inf, -np.inf]
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    bad = tmp_path / "nan.onnx"
    onnx.save(m, bad)
    r = _run("quantize", "--int8", str(bad), "-o", str(tmp_path / "q.onnx"))
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: {bad}: the input itself computes no numbers") and "NaN or inf" in lines[0]


def test_output_onto_the_inputs_external_data_file_is_refused(seed, tmp_path):
    """``-o`` naming the data file the input reads its weights from would replace them (the input then no longer
    loads): refused before any work."""
    m = onnx.load(str(seed))
    folder = tmp_path / "ext"
    folder.mkdir()
    onnx.save(m, folder / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx_data", size_threshold=256)
    data = folder / "model.onnx_data"
    before = _sha(data)
    r = _run("slice", "--width", "0.5", str(folder / "model.onnx"), "-o", str(data))
    assert r.returncode == 2 and "external-data file of the input" in r.stderr, r.stderr
    assert _sha(data) == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_output_onto_a_fifo_is_refused_and_the_fifo_kept(seed, tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    r = _run("slice", "--width", "0.5", str(seed), "-o", str(fifo))
    assert r.returncode == 2 and "not a regular file" in r.stderr, r.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_no_op_on_an_input_onnx_runtime_cannot_load_writes_nothing(seed, tmp_path):
    """Width 1 and depth 1 write a byte copy: the copy is checked like any output (opset 7 with opset-13 nodes:
    ONNX Runtime refuses the file), so nothing is written."""
    m = onnx.load(str(seed))
    m.opset_import[0].version = 7
    bad = tmp_path / "opset7.onnx"
    onnx.save(m, bad)
    r = _run("slice", str(bad), "-o", str(tmp_path / "o.onnx"))
    assert r.returncode == 2 and "does not load" in r.stderr, r.stderr
    assert not (tmp_path / "o.onnx").exists()
    ok = _run("slice", str(seed), "-o", str(tmp_path / "copy.onnx"))
    assert ok.returncode == 0 and _sha(tmp_path / "copy.onnx") == _sha(seed), ok.stderr


def test_separators_alone_name_no_heads(seed, tmp_path):
    r = _run("prune-heads", "--heads", ";;;", str(seed), "-o", str(tmp_path / "o.onnx"))
    assert r.returncode == 2 and "names no layer" in r.stderr, r.stderr


@pytest.mark.parametrize("dtype,field", [(onnx.TensorProto.FLOAT, "float_data"), (onnx.TensorProto.INT64, "int64_data"),
                                         (onnx.TensorProto.FLOAT16, "int32_data"), (onnx.TensorProto.INT8, "int32_data"),
                                         (onnx.TensorProto.DOUBLE, "double_data")])
def test_typed_field_initializers_load_and_a_wrong_count_is_refused(tmp_path, dtype, field):
    """Initializers stored in their typed fields (not raw_data) load as before; one value too many is refused."""
    from onnx import helper

    from deploytool import onnx_io
    from deploytool.errors import InputFileError

    def model(t):
        g = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", dtype, [2, 2])], [t])
        return helper.make_model(g)

    t = helper.make_tensor("w", dtype, [2, 2], [1, 2, 3, 4])
    onnx.save(model(t), tmp_path / "ok.onnx")
    onnx_io.load_model(tmp_path / "ok.onnx")
    onnx_io.load_proto(tmp_path / "ok.onnx")
    getattr(t, field).append(getattr(t, field)[0])
    onnx.save(model(t), tmp_path / "bad.onnx")
    with pytest.raises(InputFileError, match="holds 5 values where its dims"):
        onnx_io.load_model(tmp_path / "bad.onnx")


def test_sparse_initializers_and_a_non_numeric_data_offset_are_refused_by_the_loader(seed, tmp_path):
    from onnx import helper

    from deploytool import onnx_io
    from deploytool.errors import InputFileError

    m = onnx.load(str(seed))
    t = _first_weight(m)
    m.graph.sparse_initializer.append(helper.make_sparse_tensor(
        helper.make_tensor(t.name + "_sparse", onnx.TensorProto.FLOAT, [1], [1.0]),
        helper.make_tensor(t.name + "_idx", onnx.TensorProto.INT64, [1], [0]), [4]))
    onnx.save(m, tmp_path / "sparse.onnx")
    with pytest.raises(InputFileError, match="stored sparse"):
        onnx_io.load_model(tmp_path / "sparse.onnx")
    m = onnx.load(str(seed))
    onnx.save(m, tmp_path / "ext.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.data", size_threshold=256)
    m = onnx.load(str(tmp_path / "ext.onnx"), load_external_data=False)
    t = next(x for x in m.graph.initializer if x.external_data)
    next(e for e in t.external_data if e.key == "offset").value = "-4096"
    onnx.save(m, tmp_path / "ext.onnx")
    with pytest.raises(InputFileError, match="offset that is not a count of bytes"):
        onnx_io.load_model(tmp_path / "ext.onnx")


@pytest.mark.parametrize("args, expected", [
    (["fit", "{dir}", "--profile", "host", "-o", "{dir}/o.onnx"], "is a folder, expected an ONNX model file"),
    (["report", "{dir}", "-o", "{dir}/rep"], "is a folder, expected a bench results file"),
    (["eval", "{dir}/m.onnx", "--data", "rotten-tomatoes"], "m.onnx: is a folder, expected an ONNX model file"),
    # verify-arm64 takes a bundle folder: a folder is said to hold no model.ort
    (["verify-arm64", "{dir}"], "is a folder without model.ort, expected an ONNX model, an .ort file or a bundle"),
])
def test_a_folder_where_a_file_goes_is_named_a_folder(tmp_path, args, expected):
    """A folder given where a file goes was reported as "no such file", which sends a user looking for a
    missing file that is there; it is said to be a folder."""
    (tmp_path / "m.onnx").mkdir()
    r = _run(*[a.format(dir=tmp_path) for a in args])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert expected in lines[0] and "no such" not in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # nothing written


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="makes a FIFO")
@pytest.mark.parametrize("args, expected", [
    (["inspect", "{fifo}.onnx"], "expected an .onnx file"),
    (["report", "{fifo}.json", "-o", "{dir}/rep"], "expected a bench results file"),
    (["run", "{fifo}.yaml"], "expected a recipe file"),
    (["profiles", "show", "{fifo}.yaml"], "expected a device profile file"),
    # /dev/zero as --data was read until the machine ran out of memory (SIGKILL); a FIFO waited for a writer
    (["train", "--model", "{model}", "--data", "{fifo}.csv", "-o", "{dir}/t"], "expected a .csv, .tsv or .jsonl file"),
    # fit read /dev/zero as --accuracy until memory ran out too; prune-ffn said 'no such neurons file'
    (["fit", "{onnx}", "--profile", "kirin990", "--accuracy", "{fifo}.json", "-o", "{dir}/f.onnx"],
     "expected an accuracy file"),
    (["prune-ffn", "{onnx}", "--neurons", "{fifo}.json", "-o", "{dir}/p.onnx"], "expected a neurons file"),
])
def test_a_device_or_fifo_where_a_file_goes_is_named_so(seed, tmp_path, tiny_hf_folder, args, expected):
    """An input that is neither a file nor a folder (/dev/zero, a FIFO) is one line saying so, and is never read:
    it was 'empty file, not an ONNX model', 'no such recipe file', or was read for ever."""
    for suffix in (".onnx", ".json", ".yaml", ".csv"):
        os.mkfifo(tmp_path / f"in{suffix}")
    r = _run(*[a.format(fifo=tmp_path / "in", dir=tmp_path, model=tiny_hf_folder("bert"), onnx=seed) for a in args])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: {tmp_path / 'in'}.") and "not a regular file (a device, FIFO or socket)" in \
        lines[0] and expected in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "in.json", "in.onnx", "in.yaml"]  # nothing written


def _nan_weight(m):
    t = _first_weight(m)
    a = onnx.numpy_helper.to_array(t).copy()
    a[0, 0] = float("nan")
    t.CopyFrom(onnx.numpy_helper.from_array(a, t.name))


def _inf_weight(m):
    t = _first_weight(m)
    a = onnx.numpy_helper.to_array(t).copy()
    a[1, 2] = -float("inf")
    t.CopyFrom(onnx.numpy_helper.from_array(a, t.name))


@pytest.mark.parametrize("edit", [_nan_weight, _inf_weight], ids=["nan", "inf"])
@pytest.mark.parametrize("args, expected", [
    (["slice", "--width", "0.5"], "the input itself computes no numbers"),
    (["prune-ffn", "--keep", "0.5"], "the input itself computes no numbers"),
    (["reorder"], "the input itself computes no numbers"),
    (["quantize", "--fp16"], "the input itself computes no numbers"),
    (["quantize", "--int8"], "the input itself computes no numbers"),
    # pack quantized a NaN weight to all zeros (TWN's threshold of a NaN mean keeps nothing) and wrote a model
    # that ran: now refused, naming the weight
    (["pack", "--weights", "ternary"], "holds NaN or inf"),
    (["pack", "--weights", "binary"], "holds NaN or inf"),
    (["pack", "--weights", "split-binary"], "holds NaN or inf"),
    (["pack", "--weights", "ternary", "--runtime", "memory"], "holds NaN or inf"),
])
def test_nan_or_inf_in_the_weights_is_the_inputs_fault(seed, tmp_path, edit, args, expected):
    """A weight holding NaN or inf: every pass names the input (or the weight) as the cause in one line, exit 2,
    nothing written; it said the pass "wrote a model whose output is not finite", and pack wrote one."""
    m = onnx.load(str(seed))
    edit(m)
    src = tmp_path / "bad.onnx"
    onnx.save(m, str(src))
    digest = _sha(src)
    out = tmp_path / "out.onnx"
    r = _run(args[0], str(src), *args[1:], "-o", str(out))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(("note:", "warning:"))]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert expected in lines[0] and "NaN or inf" in lines[0], lines[0]
    if args[0] == "pack":
        assert repr(_first_weight(m).name) in lines[0]
    else:
        assert lines[0].startswith(f"error: {src}: ")
    assert not out.exists() and _sha(src) == digest


@pytest.mark.parametrize("args", [
    ["bench", "{m}", "--runs", "2", "--seq-len", "8"],
    ["verify-arm64", "{m}", "--cpu", "cortex-a72"],
    ["bundle", "{m}", "--profile", "snapdragon-sm8650", "-o", "{d}/bundle"],
    ["qnn", "check", "{m}", "--profile", "snapdragon-sm8650"],
    ["fit", "{m}", "--profile", "host", "-o", "{d}/fit.onnx"],
    ["inspect", "{m}"],
    ["slice", "{m}", "--width", "0.5", "-o", "{d}/s.onnx"],
    ["eval", "{m}", "--data", "rotten-tomatoes"],
])
def test_missing_external_data_is_one_line_for_every_command(seed, tmp_path, args):
    """A model whose external-data file is not beside it: bench, verify-arm64 and bundle printed ONNX Runtime's
    "External data path validation failed ... tensorprotoutils.cc:619 ..." and qnn onnx's ValidationError; every
    command says it the same way, naming the file."""
    m = onnx.load(str(seed))
    src = tmp_path / "ext.onnx"
    onnx.save(m, str(src), save_as_external_data=True, all_tensors_to_one_file=True, location="ext.data",
              size_threshold=0)
    (tmp_path / "ext.data").unlink()
    r = _run(*[a.format(m=src, d=tmp_path) for a in args])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0] == f"error: {src}: external data file 'ext.data' not found beside the model", lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext.onnx"]


@pytest.mark.parametrize("args", [["inspect", "{m}"], ["repack", "{m}", "--runtime", "memory", "-o", "{o}"],
                                  ["slice", "{m}", "--width", "0.5", "-o", "{o}"]])
def test_an_ort_format_or_compressed_file_is_named_so(seed, tmp_path, args):
    """model.ort (what ONNX Runtime's converter and bundle write) or a gzipped .onnx given for the .onnx: protobuf's
    'unsupported wire type 4' (or 7) was all the message said."""
    import gzip

    import onnxruntime as ort

    ort_file = tmp_path / "model.ort"
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(ort_file)
    so.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(seed), so, providers=["CPUExecutionProvider"])
    assert ort_file.read_bytes()[4:8] == b"ORTM"
    gz = tmp_path / "model.onnx"
    gz.write_bytes(gzip.compress(seed.read_bytes()))
    for path, needle in ((ort_file, "an ONNX Runtime ORT-format file"), (gz, "a gzip-compressed file")):
        before = _sha(path)
        out = tmp_path / "o.onnx"
        r = _run(*[a.format(m=path, o=out) for a in args])
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {needle}"), r.stderr
        assert not out.exists() and _sha(path) == before


@pytest.mark.parametrize("args", [["inspect", "{m}"], ["slice", "{m}", "--width", "0.5", "-o", "{d}/s.onnx"]])
def test_an_external_data_location_that_is_no_file_is_named_so(seed, tmp_path, args):
    """A location naming a folder, or empty (the model's own folder): both were 'not found beside the model', which
    sends the user looking for a file that is not missing."""
    m = onnx.load(str(seed))
    onnx.save(m, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.data", size_threshold=0)
    for location, expected in (("sub", "external data location 'sub' is a folder, not a file"),
                               ("", "a tensor's external data location is empty (it names no file)")):
        m = onnx.load(str(tmp_path / "ext.onnx"), load_external_data=False)
        for t in m.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
        src = tmp_path / f"m{location}.onnx"
        onnx.save(m, str(src))
        (tmp_path / "sub").mkdir(exist_ok=True)
        before = _sha(src)
        r = _run(*[a.format(m=src, d=tmp_path) for a in args])
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert lines[0] == f"error: {src}: {expected}", lines[0]
        assert not (tmp_path / "s.onnx").exists() and _sha(src) == before
