"""The host profile: detection from /proc/cpuinfo text, cgroup quota, the template, the cache, the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deploytool.runtime.machine import cgroup_cpu_quota, free_cores
from deploytool.cli import main
from deploytool.errors import ConfigError
from deploytool.profiles import HostOptions, list_profiles, load_profile
from deploytool.profiles.host import build_host_profile
from deploytool.runtime.host import HostFacts, HostMeasurement, detect_host, host_measurement, parse_cpuinfo

# first processor blocks as the kernels print them (flags trimmed to the ones that matter here)
SPR = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
stepping\t: 8
cpu MHz\t\t: 2699.998
flags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8 avx_vnni

processor\t: 1
"""
ZEN5 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC 9B45
stepping\t: 1
cpu MHz\t\t: 3000.000
flags\t\t: fpu avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16 avx_vnni
"""
ZEN4 = ZEN5.replace("cpu family\t: 26", "cpu family\t: 25").replace("model\t\t: 2", "model\t\t: 17")
AVX10 = SPR.replace("avx_vnni", "avx_vnni avx10_1 avx10_2")
A76 = """processor\t: 0
BogoMIPS\t: 52.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 1
"""
V1 = A76.replace("0xd0b", "0xd40").replace("asimddp", "asimddp sve i8mm bf16")


@pytest.mark.parametrize("text, arch, uarch, features", [
    (SPR, "x86_64", "sapphire-rapids", {"avx2", "avx512", "vnni", "amx"}),
    (ZEN5, "x86_64", "zen5", {"avx2", "avx512", "vnni"}),
    (ZEN4, "x86_64", "zen4", {"avx2", "avx512", "vnni"}),
    (AVX10, "x86_64", "sapphire-rapids", {"avx2", "avx512", "vnni", "amx", "avx10"}),
    (A76, "aarch64", "cortex-a76", {"neon", "fp16", "dotprod"}),
    (V1, "aarch64", "neoverse-v1", {"neon", "fp16", "dotprod", "sve", "i8mm", "bf16"}),
])
def test_parse_cpuinfo(text, arch, uarch, features):
    c = parse_cpuinfo(text, arch)
    assert c["microarchitecture"] == uarch
    assert set(c["features"]) == features


def test_parse_cpuinfo_reads_the_first_cpu_only_and_its_numbers():
    c = parse_cpuinfo(SPR + "vendor_id\t: AuthenticAMD\ncpu family\t: 26\n", "x86_64")
    assert (c["vendor"], c["family"], c["model"], c["stepping"], c["mhz"]) == ("GenuineIntel", 6, 143, 8, 2699.998)


def test_detect_host_from_text_keeps_the_machine_s_cores():
    f = detect_host(ZEN5, "x86_64")
    assert f.microarchitecture == "zen5" and f.usable_cores >= 1 and f.max_ghz == 3.0
    assert HostFacts.from_dict(json.loads(json.dumps(f.to_dict()))) == f
    # the cache key changes with the CPU and with onnxruntime
    assert f.key("1.32.0") != detect_host(SPR, "x86_64").key("1.32.0") != f.key("1.33.0")


def test_cgroup_quota_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path / "v1") == 2.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(tmp_path / "v1") is None


@pytest.mark.parametrize("usable, others, free", [(2, 0.0, 2), (2, 1.0, 1), (2, 0.8, 1), (2, 2.4, 0), (8, 0.2, 8)])
def test_free_cores(usable, others, free):
    assert free_cores(usable, others) == free


# --------------------------------------------------------------------------- template -> profile
def _facts(cores: int = 4) -> HostFacts:
    f = detect_host(SPR, "x86_64")
    return HostFacts(**{**f.to_dict(), "features": f.features, "flags": f.flags, "usable_cores": cores})


def _measurement(facts: HostFacts) -> HostMeasurement:
    def gemm(scale):
        return [{"m": m, "k": 384, "n": 1536, "flops": 2.0 * m * 384 * 1536, "ms": 2.0 * m * 384 * 1536 / (scale * m ** 0.3) / 1e6,
                 "gops": scale * m ** 0.3} for m in (8, 32, 128, 512)]
    rate = {"gemm": {"fp32": gemm(40.0), "int8": gemm(160.0), "fp16": gemm(30.0)},
            "attention": [{"s": s, "flops": 2 * 2.0 * 12 * s * s * 32, "ms": 0.01 + s / 1e3, "gops": 1.0}
                          for s in (8, 32, 128)],
            "elementwise": {op: [{"elements": e, "bytes": e * 8, "ms": 0.005 + e * 1e-6} for e in (3072, 49152, 196608)]
                            for op in ("Add", "Erf", "Softmax", "LayerNormalization")},
            "bandwidth_gbs": 12.5, "op_overhead_us": 0.5, "run_overhead_us": 9.0, "spread": 0.01}
    return HostMeasurement(facts=facts, onnxruntime="1.32.0", created_utc="2026-12-01T00:00:00+00:00",
                           rates={"1": rate, str(facts.usable_cores): rate}, load={}, wall_s=1.0)


TEMPLATE = {"schema_version": 1, "name": "host", "from_host": True, "description": "this machine",
            "execution_providers": ["CPU"], "threads": "auto", "budgets": {"p90_latency_ms": {128: 40}}}


def test_host_profile_nominal_peaks_and_measured_rates():
    facts = _facts(4)
    m = _measurement(facts)
    p = build_host_profile(TEMPLATE, "host.yaml", facts=facts, measurement=m)
    assert p.name == "host" and p.threads == 4 and p.from_host and p.core == "sapphire-rapids"
    # Sapphire Rapids: two 512-bit FMA pipes = 64 fp32 FLOP/cycle, 2.7 GHz from cpuinfo, 4 cores
    assert p.compute.peak("fp32") == pytest.approx(64 * 2.699998 * 4, rel=1e-3)
    assert "64 fp32 FLOP/cycle x 2.7 GHz (" in p.compute.derivation  # the clock rounded as max_ghz is
    assert p.compute.peak("int8") == pytest.approx(4 * p.compute.peak("fp32"), rel=1e-3)
    assert p.compute.memory_bandwidth_gbs == 12.5 and "bandwidth MEASURED" in p.compute.derivation
    assert p.measured_rates["4"]["gemm"]["int8"] == m.rates["4"]["gemm"]["int8"]
    assert {f.value for f in p.features} == {"avx2", "avx512", "vnni", "amx"}
    d = p.to_dict()
    assert d["host"]["measured"] and d["host"]["facts"]["model"] == 143 and "4_threads" in d["host"]["rates"]


def test_host_profile_without_measurement_says_so():
    p = build_host_profile(TEMPLATE, "host.yaml", HostOptions(measure=False), facts=_facts(2), measurement=None)
    assert p.threads == 2 and "NOT MEASURED" in p.compute.derivation and p.measured_rates is None


@pytest.mark.parametrize("change, match", [
    ({"threads": 64}, r"host.yaml: threads: expected at most the 4 usable core"),
    ({"threads": "many"}, r"host.yaml: threads: expected 'auto'"),
    ({"budget": {}}, r"host.yaml: budget: unknown key \(did you mean 'budgets'\?\)"),
])
def test_host_template_errors_name_file_and_key(change, match):
    with pytest.raises(ConfigError, match=match):
        build_host_profile({**TEMPLATE, **change}, "host.yaml", facts=_facts(4), measurement=_measurement(_facts(4)))


@pytest.mark.parametrize("auto", ["Auto", " AUTO "])
def test_threads_auto_is_a_keyword_in_any_case(auto):
    """'threads: Auto' was refused ("expected 'auto' ... got str 'Auto'"), while every other closed-set choice
    matches in any case (choices.match_name)."""
    p = build_host_profile({**TEMPLATE, "threads": auto}, "host.yaml", facts=_facts(4),
                           measurement=_measurement(_facts(4)))
    assert p.threads == 4


def test_an_xnnpack_thread_count_past_this_machine_s_cores_names_them():
    """A host template has no cpu key: its XNNPACK thread count is checked against the usable cores, and said so."""
    eps = [{"name": "XNNPACK", "options": {"intra_op_num_threads": 64}}, "CPU"]
    with pytest.raises(ConfigError) as e:
        build_host_profile({**TEMPLATE, "execution_providers": eps}, "host.yaml", facts=_facts(4),
                           measurement=_measurement(_facts(4)))
    assert str(e.value) == ("host.yaml: execution_providers[0].options.intra_op_num_threads: expected a whole number "
                            "of threads from 1 to 4 (this machine's usable cores), got 64")


def test_no_shipped_profile_hard_codes_the_build_machine(tmp_path):
    profs = {p.name: p for p in list_profiles(host=HostOptions(cache_dir=tmp_path, measure=False))}
    for name in ("host", "x86-host"):
        assert profs[name].from_host  # built from this machine at load time
        assert profs[name].soc.startswith(detect_host().model_name)
    assert not list(tmp_path.iterdir())  # listing never measures


@pytest.mark.slow  # the host microbenchmark: 33 s in a full run
def test_measurement_is_cached_once_per_machine(tmp_path):
    m1 = host_measurement(tmp_path, measure=True, facts=detect_host(), threads=(1,), quiet_wait_s=0)
    files = list(tmp_path.glob("host-*.json"))
    assert len(files) == 1
    r = m1.at(1)
    assert r["gemm"]["fp32"] and all(x["gops"] > 0 for x in r["gemm"]["int8"]) and r["bandwidth_gbs"] > 0
    assert m1.load["before"]["usable_cores"] >= 1  # the load at measurement time is recorded
    m2 = host_measurement(tmp_path, measure=False)
    assert m2 is not None and m2.created_utc == m1.created_utc  # read back, not measured again
    prof = load_profile("host", host=HostOptions(cache_dir=tmp_path, measure=False))
    assert prof.measured_rates is not None and "MEASURED" in prof.compute.derivation

    res = CliRunner().invoke(main, ["profiles", "show", "host", "--host-cache", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert shown["name"] == "host" and shown["host"]["measured"] and shown["host"]["measured_utc"] == m1.created_utc


def _shapes() -> dict[str, object]:
    """Cache files that are valid JSON but not a host measurement (a hand edit, another tool's file)."""
    good = _measurement(_facts(4)).to_dict()

    def rate(**change):
        r = dict(good["rates"]["1"], **change)
        return {**good, "rates": {"1": r}}

    return {"list": [], "number": 5, "string": "x", "null": None, "facts-list": {**good, "facts": []},
            "rates-list": {**good, "rates": []}, "rates-empty": {**good, "rates": {}},
            "threads-not-a-count": {**good, "rates": {"many": good["rates"]["1"]}},
            "rate-list": {**good, "rates": {"1": []}}, "bandwidth-str": rate(bandwidth_gbs="fast"),
            "gemm-list": rate(gemm=[1]), "gemm-rows": rate(gemm={"fp32": [{"m": 8}]}),
            "attention-null": rate(attention=None), "no-add": rate(elementwise={"Erf": good["rates"]["1"]["elementwise"]["Erf"]}),
            "load-list": {**good, "load": [1]}}


@pytest.mark.parametrize("shape", list(_shapes()))
def test_a_cache_file_of_another_shape_is_ignored_like_a_corrupt_one(tmp_path, shape, caplog):
    """Not an AttributeError in every command (the report loads x86-host even for a phone's rows): a warning,
    then no measurement (or a new one where measuring is allowed), as for a file that is not JSON."""
    from deploytool.runtime.host import _ort_version

    facts = detect_host()
    (tmp_path / f"host-{facts.key(_ort_version())}.json").write_text(json.dumps(_shapes()[shape]))
    assert host_measurement(tmp_path, measure=False, facts=facts) is None
    assert "unreadable host measurement" in caplog.text
    prof = load_profile("x86-host", host=HostOptions(cache_dir=tmp_path, measure=False))
    assert "NOT MEASURED" in prof.compute.derivation


def test_a_cache_file_of_the_right_shape_is_read_back(tmp_path):
    from deploytool.runtime.host import _ort_version

    facts = _facts(4)
    m = _measurement(facts)
    (tmp_path / f"host-{facts.key(_ort_version())}.json").write_text(json.dumps(m.to_dict()))
    assert host_measurement(tmp_path, measure=False, facts=facts) == m


@pytest.mark.parametrize("how", ["dangling-link", "under-a-file"])
def test_a_host_cache_that_cannot_be_a_folder_is_refused_before_measuring(tmp_path, monkeypatch, how):
    """'profiles show host --host-cache LINK' (a link to nothing, or a path under a file) measured the machine first
    (20 s, over 100 s on a busy one) and then failed writing the cache with "[Errno 17] File exists"; now refused
    before the measurement, in the words of every other folder check."""
    import deploytool.runtime.host as rh

    def never(*a, **k):
        raise AssertionError("measured before the cache folder was checked")

    monkeypatch.setattr(rh, "measure_host", never)
    if how == "dangling-link":
        bad = tmp_path / "gone"
        bad.symlink_to(tmp_path / "removed")
        said = f"{bad}: is a link to {tmp_path / 'removed'}, which leads to no folder"
    else:
        (tmp_path / "afile").write_text("x")
        bad = tmp_path / "afile" / "cache"
        said = f"{bad}: {tmp_path / 'afile'} is a file, not a folder"
    from deploytool.errors import OutputPathError

    with pytest.raises(OutputPathError, match="host measurement cache, --host-cache"):
        host_measurement(bad, measure=True, facts=_facts(4))
    r = CliRunner().invoke(main, ["profiles", "show", "host", "--host-cache", str(bad)])
    assert r.exit_code == 2 and r.stderr == f"error: {said} (the host measurement cache, --host-cache)\n", r.output


@pytest.mark.parametrize("opt", [["--remeasure"], ["--host-cache", "{tmp}/hc"]], ids=["remeasure", "host-cache"])
def test_host_options_on_a_written_profile_are_refused(tmp_path, opt):
    """'profiles show kirin990 --remeasure' printed the profile, exit 0: the option was ignored in silence (a
    written profile has nothing to measure), as was --host-cache."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in opt]
    r = CliRunner().invoke(main, ["profiles", "show", "kirin990", *args])
    assert r.exit_code == 2 and r.stdout == "", r.output
    assert r.stderr == (f"error: {opt[0]}: only for a profile built from this machine (such as host); kirin990 is a "
                        "written profile, with nothing measured\n")
    assert list(tmp_path.iterdir()) == []
