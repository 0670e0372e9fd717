"""verify-arm64 on an ORT-format file: a bundle folder's model.ort (deploytool bundle) or an .ort, run as it ships on
both sides (host reference from the same file). Refusals and the host side run without QEMU; the emulator's run is
stood in for by the guest script run by this Python (the same file, the same machine: outputs equal exactly). One
real run under QEMU, where the emulator can be set up (as tests/arm64/test_arm64.py decides)."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import CliRunner

from deploytool.cli import main

HOST_ORT = version("onnxruntime")


def _err_line(r) -> str:
    err = r.stderr if hasattr(r, "stderr") else r.output
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def bundle(tiny_onnx, tmp_path_factory) -> Path:
    """A phone bundle of a tiny BERT for raspberry-pi-4 (XNNPACK first: ``runtime`` optimizations, whose replay the
    manifest's session config entry asks for)."""
    from deploytool.bundle import BundleConfig, make_bundle
    from deploytool.profiles import load_profile

    out = tmp_path_factory.mktemp("arm64_ort") / "bundle"
    make_bundle(tiny_onnx("bert", layers=2, hidden=32, heads=4, ffn=64), out,
                BundleConfig(profile=load_profile("raspberry-pi-4"), qnn=False))
    return out


@pytest.fixture(scope="module")
def fixed_ort(tiny_onnx, tmp_path_factory) -> Path:
    """The same model as a ``fixed``-style .ort (ORT's optimizations baked in: fused nodes, FusedMatMul...)."""
    from deploytool.runtime.mobile import convert_to_ort

    d = tmp_path_factory.mktemp("arm64_ort_fixed")
    path, _ = convert_to_ort(tiny_onnx("bert", layers=2, hidden=32, heads=4, ffn=64), [], d, style="fixed",
                             stem="tiny")
    return path


def _version_string_at(data: bytes) -> int:
    """Where the root table's ort_version string's bytes start (FlatBuffers: root offset, vtable, field 0)."""
    root = struct.unpack_from("<I", data, 0)[0]
    vt = root - struct.unpack_from("<i", data, root)[0]
    field = root + struct.unpack_from("<H", data, vt + 4)[0]
    return field + struct.unpack_from("<I", data, field)[0] + 4


class _HostGuest:
    """Stands in for the QEMU emulator: runs the guest script with this Python; records the jobs it was given."""

    def __init__(self, home: Path, ort: str = HOST_ORT) -> None:
        from deploytool.arm64.emulator import Emulator

        self.jobs: list[dict] = []
        outer = self

        class HostEmulator(Emulator):
            @property
            def onnxruntime_version(self) -> str:
                return ort

            def run_python(self, cpu, args, *, timeout_s=None):
                outer.jobs.append(json.loads(Path(args[1]).read_text()))
                return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout_s)

        self.emulator = HostEmulator(home)


@pytest.fixture
def host_guest(tmp_path, monkeypatch):
    import deploytool.arm64.verify as verify

    g = _HostGuest(tmp_path / "emu")
    monkeypatch.setattr(verify, "ensure_emulator", lambda *a, **k: g.emulator)
    return g


# ----------------------------------------------------------------------------------------- reading the file

@pytest.mark.parametrize("which", ["bundle", "fixed"])
def test_skeleton_reads_what_onnxruntimes_own_flatbuffers_reader_reads(bundle, fixed_ort, which):
    """The hand-written FlatBuffers reader against ONNX Runtime's generated bindings (the reference): nodes,
    initializers (names, shapes, types), metadata, format version."""
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs.InferenceSession import InferenceSession

    from deploytool.arm64.ort_file import ort_format_version, ort_skeleton
    from deploytool.runtime.mobile import signature

    path = bundle / "model.ort" if which == "bundle" else fixed_ort
    sess = InferenceSession.GetRootAsInferenceSession(path.read_bytes(), 0)
    g = sess.Model().Graph()
    skel = ort_skeleton(path, signature(path))
    assert ort_format_version(path) == sess.OrtVersion().decode() == "6"
    assert [(n.op_type, n.domain, list(n.input), list(n.output)) for n in skel.graph.node] == [
        (g.Nodes(i).OpType().decode(), g.Nodes(i).Domain().decode(),
         [g.Nodes(i).Inputs(j).decode() for j in range(g.Nodes(i).InputsLength())],
         [g.Nodes(i).Outputs(j).decode() for j in range(g.Nodes(i).OutputsLength())]) for i in range(g.NodesLength())]
    assert len(skel.graph.node) > 20
    assert [(t.name, list(t.dims), t.data_type) for t in skel.graph.initializer] == [
        (g.Initializers(i).Name().decode(), [int(d) for d in g.Initializers(i).DimsAsNumpy()],
         g.Initializers(i).DataType()) for i in range(g.InitializersLength())]
    m = sess.Model()
    assert {p.key: p.value for p in skel.metadata_props} == {
        m.MetadataProps(i).Key().decode(): m.MetadataProps(i).Value().decode() for i in range(m.MetadataPropsLength())}
    assert "deploytool.family" in {p.key for p in skel.metadata_props}


@pytest.mark.parametrize("which", ["bundle", "fixed"])
def test_an_ort_gets_the_inputs_and_precision_its_onnx_gets(tiny_onnx, bundle, fixed_ort, which):
    """The synthetic inputs are planned from the .ort's skeleton as from the .onnx it was made from (the vocabulary
    from the word table: ids past it would index out of the table), with the session's names and shapes."""
    from deploytool.arm64.ort_file import ort_skeleton
    from deploytool.arm64.verify import _ort_precision
    from deploytool.runtime.inputs import plan_inputs, plan_inputs_proto
    from deploytool.runtime.mobile import signature
    from deploytool.variant import model_precision

    onnx_path = tiny_onnx("bert", layers=2, hidden=32, heads=4, ffn=64)
    path = bundle / "model.ort" if which == "bundle" else fixed_ort
    skel = ort_skeleton(path, signature(path))
    ref = plan_inputs(onnx_path)
    assert plan_inputs_proto(skel, path) == ref and ref.vocab == 100
    assert _ort_precision(skel) == model_precision(onnx_path) == ("fp32", 64)


# ---------------------------------------------------------------------------------------------- refusals

def _bad(kind: str, bundle: Path, tmp: Path) -> tuple[list[str], str]:
    data = (bundle / "model.ort").read_bytes()
    if kind == "folder without model.ort":
        (tmp / "empty").mkdir()
        return [str(tmp / "empty")], f"{tmp / 'empty'}: is a folder without model.ort, expected an ONNX model"
    if kind == "truncated":
        (tmp / "t.ort").write_bytes(data[: len(data) // 2])
        return [str(tmp / "t.ort")], f"{tmp / 't.ort'}: a truncated or damaged ORT-format file"
    if kind == "not ORT format":
        (tmp / "x.ort").write_text("hello\n")
        return [str(tmp / "x.ort")], f"{tmp / 'x.ort'}: not an ORT-format file"
    if kind == "newer format version":
        at = _version_string_at(data)
        assert data[at:at + 1] == b"6"
        (tmp / "v9.ort").write_bytes(data[:at] + b"9" + data[at + 1:])
        return [str(tmp / "v9.ort")], f"{tmp / 'v9.ort'}: its ORT format version 9 is not one ONNX Runtime"
    if kind in ("written by another release", "damaged manifest"):
        b = tmp / "b"
        shutil.copytree(bundle, b)
        m = b / "manifest.json"
        if kind == "damaged manifest":
            m.write_text("{")
            return [str(b)], f"{m}: not a readable bundle manifest"
        d = json.loads(m.read_text())
        assert d["ort"]["onnxruntime"] == HOST_ORT
        d["ort"]["onnxruntime"] = "1.31.0"
        m.write_text(json.dumps(d))
        return [str(b)], f"{b / 'model.ort'}: written by ONNX Runtime 1.31.0 ({m}), but ONNX Runtime {HOST_ORT} runs it"
    if kind == "bundle and its file":
        return [str(bundle), str(bundle / "model.ort")], f"models: {bundle / 'model.ort'} given twice (as {bundle})"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["folder without model.ort", "truncated", "not ORT format", "newer format version",
                                  "written by another release", "damaged manifest", "bundle and its file"])
def test_a_bad_ort_input_is_one_line_exit_2_before_the_emulator(bundle, tmp_path, kind):
    """Refused in one line before the emulator is looked for (it is not set up in --emulator-dir, and --no-setup:
    reaching it would say 'not set up' instead), and -o is not written."""
    args, expected = _bad(kind, bundle, tmp_path)
    out = tmp_path / "v.json"
    r = CliRunner().invoke(main, ["verify-arm64", *args, "--cpu", "cortex-a72", "--emulator-dir",
                                  str(tmp_path / "none"), "--no-setup", "-o", str(out)])
    assert r.exit_code == 2 and _err_line(r).startswith(f"error: {expected}"), r.output
    assert not out.exists()


def test_a_bundle_made_for_another_release_than_the_emulators_is_refused(bundle, tmp_path, monkeypatch):
    import deploytool.arm64.verify as verify

    g = _HostGuest(tmp_path / "emu", ort="1.31.0")
    monkeypatch.setattr(verify, "ensure_emulator", lambda *a, **k: g.emulator)
    r = CliRunner().invoke(main, ["verify-arm64", str(bundle), "--cpu", "cortex-a72"])
    assert r.exit_code == 2 and _err_line(r) == (
        f"error: {bundle / 'model.ort'}: written by ONNX Runtime {HOST_ORT} ({bundle / 'manifest.json'}), but ONNX "
        f"Runtime 1.31.0 runs it in the ARM64 emulator: the check would not be of the runtime the bundle was made "
        f"for; make the bundle again with onnxruntime 1.31.0")
    assert g.jobs == []


# ------------------------------------------------------------------------------ the host side, the whole run

def test_a_bundle_runs_its_own_file_with_its_session_entries_on_both_sides(bundle, host_guest):
    """The guest gets the bundle's model.ort itself and the manifest's session config entries; the host reference
    ran the same file: with the guest script run by this Python, the outputs are equal exactly."""
    from deploytool.arm64 import VerifyConfig, verify_arm64

    res = verify_arm64(VerifyConfig(models=(bundle,), cpus=("cortex-a72", "neoverse-n1"), setup=False))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["session"]["config_entries"] == {"session.enable_saved_runtime_optimizations": "1"}
    assert len(host_guest.jobs) == 2
    for job in host_guest.jobs:
        (item,) = job["models"]
        assert Path(item["model"]) == (bundle / "model.ort").resolve()
        assert item["config_entries"] == manifest["session"]["config_entries"]
    data = (bundle / "model.ort").read_bytes()
    assert [c.cpu for c in res.checks] == ["cortex-a72", "neoverse-n1"] and res.ok
    for c in res.checks:
        assert (c.format, c.bundle, c.model) == ("ort", str(bundle), str(bundle / "model.ort"))
        assert (c.file_bytes, c.file_sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert c.error is None and c.outputs and all(o.max_abs == 0.0 for o in c.outputs)
        assert c.to_dict()["bundle"] == str(bundle)
    assert "bundle/model.ort" in res.table()


def test_the_cli_says_it_checked_the_bundles_file(bundle, fixed_ort, host_guest):
    r = CliRunner().invoke(main, ["verify-arm64", str(bundle), str(fixed_ort), "--cpu", "max", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert [(c["format"], c["bundle"]) for c in d["checks"]] == [("ort", str(bundle)), ("ort", None)]
    sha = hashlib.sha256((bundle / "model.ort").read_bytes()).hexdigest()
    assert f"checked bundle {bundle}: its model.ort as it ships, (ORT format" in r.stderr
    assert f"sha256 {sha[:16]}..." in r.stderr
    assert f"checked {fixed_ort} (ORT format" in r.stderr
    # a bare .ort runs with the runtime-optimization replay entry (a no-op for its baked-in optimizations)
    assert host_guest.jobs[0]["models"][1]["config_entries"] == {"session.enable_saved_runtime_optimizations": "1"}


# --------------------------------------------------------------------------------------------- under QEMU

def test_a_bundle_under_qemu(emulator, bundle, tmp_path):
    """The real thing: the bundle's model.ort in ONNX Runtime's aarch64 wheel on an emulated Cortex-A72 (the
    raspberry-pi-4 profile the bundle was made for), within the fp32 tolerance of the host's run of the file."""
    out = tmp_path / "v.json"
    r = CliRunner().invoke(main, ["verify-arm64", str(bundle), "--profile", "raspberry-pi-4", "-o", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    (c,) = d["checks"]
    assert d["ok"] and d["onnxruntime_aarch64"] == HOST_ORT and c["cpu"] == "cortex-a72"
    assert (c["format"], c["bundle"], c["precision"]) == ("ort", str(bundle), "fp32")
    assert c["providers"] == ["CPUExecutionProvider"] and c["skipped"][0]["provider"] == "XnnpackExecutionProvider"
    assert 0 < max(o["max_abs"] for o in c["outputs"]) < 1e-4
    assert f"checked bundle {bundle}: its model.ort as it ships" in r.output


def test_an_fp16_bundles_ort_runs_the_x86_casts_on_a_core_with_fp16_arithmetic(emulator, tiny_onnx, tmp_path):
    """What bundle's fp16 note says, measured: on neoverse-n1 (fp16 arithmetic) the .onnx drops most of the x86 host's
    inserted fp16 -> fp32 casts (ORT inserts them per device when it builds a session from an .onnx), while the
    bundle's model.ort, converted on x86, runs every one it carries (a .ort gets no casts added or dropped at load)."""
    from onnx import load, save
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from deploytool.bundle import BundleConfig, make_bundle
    from deploytool.profiles import load_profile

    half = tmp_path / "half.onnx"
    save(convert_float_to_float16(load(str(tiny_onnx("bert", layers=2, hidden=32, heads=4, ffn=64))),
                                  keep_io_types=False), str(half))
    b = tmp_path / "b"
    note = make_bundle(half, b, BundleConfig(profile=load_profile("raspberry-pi-4"), qnn=False)).manifest["ort"]["note"]
    r = CliRunner().invoke(main, ["verify-arm64", str(half), str(b), "--cpu", "neoverse-n1", "--json"])
    assert r.exit_code == 0, r.output
    onnx_check, ort_check = json.loads(r.stdout)["checks"]
    assert onnx_check["precision"] == ort_check["precision"] == "fp16"
    assert 0 < onnx_check["inserted_casts"] < onnx_check["host_inserted_casts"] and onnx_check["fp16_native"]
    assert ort_check["inserted_casts"] == ort_check["host_inserted_casts"] > onnx_check["host_inserted_casts"]
    assert ort_check["fp16_native"] is False
    assert f"put {ort_check['inserted_casts']} fp16 -> fp32 casts into model.ort" in note


def test_the_json_is_not_written_over_the_bundles_file(bundle, tmp_path):
    """-o naming the bundle's model.ort (an input, given through its folder) is refused before anything runs."""
    b = tmp_path / "b"
    shutil.copytree(bundle, b)
    before = (b / "model.ort").read_bytes()
    r = CliRunner().invoke(main, ["verify-arm64", str(b), "--cpu", "max", "--emulator-dir", str(tmp_path / "none"),
                                  "--no-setup", "-o", str(b / "model.ort")])
    assert r.exit_code == 2 and _err_line(r) == f"error: {b / 'model.ort'}: output would overwrite the input; choose another path"
    assert (b / "model.ort").read_bytes() == before


# ------------------------------------------------------------------------ the profile a bundle was made for

def test_a_bundle_without_profile_or_cpu_runs_on_the_profile_its_manifest_names(bundle, tiny_onnx, host_guest):
    """verify-arm64 BUNDLE with neither --profile nor --cpu asked for one, although the manifest names the profile the
    bundle was made for (raspberry-pi-4: QEMU cortex-a72, XNNPACK first): that one is used, said in one line."""
    r = CliRunner().invoke(main, ["verify-arm64", str(bundle)])
    assert r.exit_code == 0, r.output
    first = r.stdout.splitlines()[0]
    assert first == (f"profile raspberry-pi-4: the one bundle {bundle} was made for (its manifest.json; --profile or "
                     "--cpu to choose)"), r.stdout
    (job,) = host_guest.jobs
    assert job["models"][0]["providers"][0] == "XnnpackExecutionProvider"
    r = CliRunner().invoke(main, ["verify-arm64", str(bundle), "--json"])
    d = json.loads(r.stdout)
    assert (d["profile"], d["profile_from"], d["cpus"]) == ("raspberry-pi-4", str(bundle), ["cortex-a72"])
    # given, --cpu or --profile is what runs, and nothing is said of the manifest
    r = CliRunner().invoke(main, ["verify-arm64", str(bundle), "--cpu", "max", "--json"])
    d = json.loads(r.stdout)
    assert (d["profile"], d["profile_from"], d["cpus"]) == (None, None, ["max"])


def test_without_a_profile_anywhere_it_is_still_asked_for(bundle, tiny_onnx, tmp_path, host_guest):
    onnx_model = tiny_onnx("bert", layers=2, hidden=32, heads=4, ffn=64)
    bare = tmp_path / "m.ort"
    shutil.copy(bundle / "model.ort", bare)
    nameless = tmp_path / "nameless"
    shutil.copytree(bundle, nameless)
    m = json.loads((nameless / "manifest.json").read_text())
    del m["profile"]
    (nameless / "manifest.json").write_text(json.dumps(m))
    for given in ([onnx_model], [bare], [nameless]):
        r = CliRunner().invoke(main, ["verify-arm64", *map(str, given)])
        assert r.exit_code == 2 and _err_line(r) == "error: give a device profile (--profile) or QEMU CPU models (--cpu)"
    # a manifest naming a profile this machine does not have, and bundles made for two profiles: one line each
    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    m = json.loads((other / "manifest.json").read_text())
    m["profile"]["name"] = "my-board"
    (other / "manifest.json").write_text(json.dumps(m))
    r = CliRunner().invoke(main, ["verify-arm64", str(other)])
    line = _err_line(r)
    assert r.exit_code == 2 and line.startswith(f"error: {other / 'manifest.json'}: made for profile 'my-board', "
                                                "which cannot be loaded here (") and line.endswith(
        "); give a device profile (--profile) or QEMU CPU models (--cpu)"), line
    r = CliRunner().invoke(main, ["verify-arm64", str(bundle), str(other)])
    assert r.exit_code == 2 and _err_line(r) == (
        f"error: the bundles were made for different profiles ({bundle} for 'raspberry-pi-4', {other} for "
        "'my-board'); give a device profile (--profile) or QEMU CPU models (--cpu)")
    assert host_guest.jobs == []


def test_a_bundles_profile_from_a_profiles_folder_is_found_there(bundle, tmp_path, host_guest):
    """A bundle made for a profile of the user's own folder: 'verify-arm64 B --profiles-dir DIR' loads it from DIR
    (the option reached the command, not the manifest's lookup: 'cannot be loaded here')."""
    import yaml

    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    m = json.loads((other / "manifest.json").read_text())
    m["profile"]["name"] = "my-board"
    (other / "manifest.json").write_text(json.dumps(m))
    folder = tmp_path / "profiles"
    folder.mkdir()
    prof = yaml.safe_load((Path(__file__).resolve().parents[2] / "device_profiles" / "raspberry-pi-4.yaml").read_text())
    prof["name"] = "my-board"
    (folder / "my-board.yaml").write_text(yaml.safe_dump(prof))
    r = CliRunner().invoke(main, ["verify-arm64", str(other), "--profiles-dir", str(folder), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert (d["profile"], d["profile_from"], d["cpus"]) == ("my-board", str(other), ["cortex-a72"])
