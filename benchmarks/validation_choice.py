"""pydantic v2 or msgspec for recipes, device profiles and pass configs (issue #16, item 2)?

Measures, for each library, in the same Python:

- the import time in a fresh process (``python -c "import X"`` minus ``python -c "pass"``, median of
  ``--runs`` alternating runs), and of the library plus a recipe-like and a profile-like schema;
- the raw error each gives for three bad inputs in a recipe and in a profile: an unknown (typo'd)
  key, a wrong type and an out-of-range value, and what each error object carries (a key path, the
  bad input, the allowed bound) for deploytool's own ``file.yaml: key.path: problem`` line with a
  did-you-mean.

Writes ``benchmarks/results/validation_choice.json`` with the machine (CPU, cores), the load average
before and after, the date and the versions. Needs both libraries and PyYAML only (not deploytool):
``python benchmarks/validation_choice.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

RESULTS = Path(__file__).resolve().parent / "results" / "validation_choice.json"

# the same two schemas in each library: a recipe's sweep/bench part and a profile's compute part
PYDANTIC_SCHEMA = textwrap.dedent("""
    import enum
    from typing import Annotated
    from pydantic import BaseModel, ConfigDict, Field

    class Precision(str, enum.Enum):
        FP32 = "fp32"; FP16 = "fp16"; INT8 = "int8"; TERNARY = "ternary"; BINARY = "binary"

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    class Sweep(Strict):
        width: list[Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=lambda: [1.0])
        precision: list[Annotated[Precision, Field(strict=False)]] = Field(default_factory=lambda: [Precision.FP32])

    class Bench(Strict):
        seq_lens: list[Annotated[int, Field(ge=1, le=4096)]] = Field(default_factory=lambda: [8, 128])
        runs: Annotated[int, Field(ge=1, le=100000)] = 50

    class Recipe(Strict):
        schema_version: int
        name: str
        sweep: Sweep = Sweep()
        bench: Bench = Bench()

    class Compute(Strict):
        memory_bandwidth_gbs: Annotated[float, Field(gt=0)]
        peak_gops: dict[str, Annotated[float, Field(gt=0)]]

    class Profile(Strict):
        schema_version: int
        name: str
        compute: Compute
""")

MSGSPEC_SCHEMA = textwrap.dedent("""
    import enum
    from typing import Annotated
    import msgspec
    from msgspec import Meta

    class Precision(str, enum.Enum):
        FP32 = "fp32"; FP16 = "fp16"; INT8 = "int8"; TERNARY = "ternary"; BINARY = "binary"

    class Sweep(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
        width: tuple[Annotated[float, Meta(gt=0, le=1)], ...] = (1.0,)
        precision: tuple[Precision, ...] = (Precision.FP32,)

    class Bench(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
        seq_lens: tuple[Annotated[int, Meta(ge=1, le=4096)], ...] = (8, 128)
        runs: Annotated[int, Meta(ge=1, le=100000)] = 50

    class Recipe(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
        schema_version: int
        name: str
        sweep: Sweep = Sweep()
        bench: Bench = Bench()

    class Compute(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
        memory_bandwidth_gbs: Annotated[float, Meta(gt=0)]
        peak_gops: dict[str, Annotated[float, Meta(gt=0)]]

    class Profile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
        schema_version: int
        name: str
        compute: Compute
""")

# a validation of one recipe and one profile (what loading a recipe costs end to end)
_VALIDATE = """
import yaml
_r, _p = yaml.safe_load(RECIPE_DOC), yaml.safe_load(PROFILE_DOC)
if "{lib}" == "pydantic":
    Recipe.model_validate(_r); Profile.model_validate(_p)
else:
    msgspec.convert(_r, Recipe); msgspec.convert(_p, Profile)
"""

RECIPE = """
schema_version: 1
name: demo
sweep: {width: [0.5, 1.0], precision: [fp32, int8]}
bench: {seq_len: [8, 128], runs: 50}
"""
PROFILE = """
schema_version: 1
name: pi5
compute: {memory_bandwidth_gbs: 17.0, peak_gops: {fp32: 60.0}}
"""
_VALIDATE = f"RECIPE_DOC = {RECIPE!r}\nPROFILE_DOC = {PROFILE!r}\n" + _VALIDATE
# (what, document, key path that is wrong, the edit)
CASES = [
    ("recipe", "typo'd key", RECIPE, "bench.sed_len", lambda d: d["bench"].update(sed_len=d["bench"].pop("seq_len"))),
    ("recipe", "wrong type", RECIPE, "bench.runs", lambda d: d["bench"].update(runs="many")),
    ("recipe", "out of range", RECIPE, "bench.seq_len[0]", lambda d: d["bench"].update(seq_len=[5000])),
    ("recipe", "bad enum value", RECIPE, "sweep.precision[1]", lambda d: d["sweep"].update(precision=["fp32", "int4"])),
    ("profile", "typo'd key", PROFILE, "compute.peak_gop", lambda d: d["compute"].update(peak_gop=d["compute"].pop("peak_gops"))),
    ("profile", "wrong type", PROFILE, "compute.memory_bandwidth_gbs",
     lambda d: d["compute"].update(memory_bandwidth_gbs="fast")),
    ("profile", "out of range", PROFILE, "compute.peak_gops.fp32", lambda d: d["compute"]["peak_gops"].update(fp32=-1.0)),
]


def _machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def _import_ms(code: str, runs: int) -> list[float]:
    """Wall time of a fresh interpreter running ``code``, in ms, each run."""
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        out.append((time.perf_counter() - t) * 1000)
    return out


def _module(name: str, code: str) -> dict:
    """Run a schema text as module ``name`` (pydantic resolves annotations through ``sys.modules``)."""
    import types

    mod = types.ModuleType(name)
    sys.modules[name] = mod
    exec(code, mod.__dict__)  # noqa: S102 - our own schema text, the same the import timing ran
    return mod.__dict__


def _errors_pydantic(ns: dict, which: str, data: dict) -> dict:
    from pydantic import ValidationError

    cls = ns["Recipe"] if which == "recipe" else ns["Profile"]
    try:
        cls.model_validate(data)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        return {"message": str(e).splitlines()[0] + " / " + " ".join(str(e).splitlines()[1:3]).strip(),
                "carries": {"loc": list(first["loc"]), "type": first["type"], "msg": first["msg"],
                            "input": repr(first.get("input")), "ctx": {k: repr(v) for k, v in (first.get("ctx") or {}).items()}}}
    return {"message": None}


def _errors_msgspec(ns: dict, which: str, data: dict) -> dict:
    import msgspec

    cls = ns["Recipe"] if which == "recipe" else ns["Profile"]
    try:
        msgspec.convert(data, cls)
    except msgspec.ValidationError as e:
        return {"message": str(e), "carries": {"text only": True, "attributes": [a for a in dir(e) if not a.startswith("_")
                                                                                   and a not in ("args", "with_traceback",
                                                                                                 "add_note")]}}
    return {"message": None}


def _importtime(python: str, module: str, runs: int) -> dict:
    """Median cumulative import time (ms) of ``module`` and of the packages it pulls in, from
    ``python -X importtime`` in fresh processes (the worktree's deploytool: what the choice costs in place)."""
    root = Path(__file__).resolve().parents[1]
    keys = (module, "deploytool.validation", "pydantic", "pydantic_core", "onnx_ir", "onnx", "numpy")
    seen: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(runs):
        err = subprocess.run([python, "-X", "importtime", "-c", f"import {module}"], cwd=root, check=True,
                             capture_output=True, text=True).stderr
        for line in err.splitlines():
            parts = [x.strip() for x in line.split("|")]
            if len(parts) == 3 and parts[2] in seen:
                seen[parts[2]].append(int(parts[1]) / 1000)
    return {k: round(statistics.median(v), 1) for k, v in seen.items() if v}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--deploytool-python", default=None,
                    help="a Python with this worktree's deploytool installed: also time importing a pass module")
    args = ap.parse_args()
    run = stamp()
    import msgspec
    import pydantic
    import yaml

    load_before = os.getloadavg()
    codes = {"python": "pass", "pydantic": "import pydantic", "msgspec": "import msgspec",
             "pydantic+schema": PYDANTIC_SCHEMA, "msgspec+schema": MSGSPEC_SCHEMA,
             # pydantic builds each model's validator at class creation unless told to wait for first use
             "pydantic+schema defer_build": PYDANTIC_SCHEMA.replace("frozen=True)", "frozen=True, defer_build=True)"),
             "pydantic+schema+validate": PYDANTIC_SCHEMA + _VALIDATE.replace("{lib}", "pydantic"),
             "msgspec+schema+validate": MSGSPEC_SCHEMA + _VALIDATE.replace("{lib}", "msgspec")}
    timings: dict[str, list[float]] = {k: [] for k in codes}
    for _ in range(args.runs):  # alternate, so load changes hit every library alike
        for k, code in codes.items():
            timings[k] += _import_ms(code, 1)
    base = statistics.median(timings["python"])
    imports = {k: {"median_ms": round(statistics.median(v), 1), "over_bare_python_ms": round(statistics.median(v) - base, 1),
                   "min_ms": round(min(v), 1), "max_ms": round(max(v), 1)} for k, v in timings.items()}

    ns_p = _module("vc_pydantic_schema", PYDANTIC_SCHEMA)
    ns_m = _module("vc_msgspec_schema", MSGSPEC_SCHEMA)
    messages = []
    for which, what, doc, key, edit in CASES:
        data = yaml.safe_load(doc)
        edit(data)
        messages.append({"document": which, "case": what, "wrong_key": key,
                         "pydantic": _errors_pydantic(ns_p, which, data),
                         "msgspec": _errors_msgspec(ns_m, which, data)})
    in_place = None
    if args.deploytool_python:
        in_place = {"module": "deploytool.passes.slice_subnetwork", "runs": args.runs,
                    "cumulative_import_ms_median": _importtime(args.deploytool_python,
                                                               "deploytool.passes.slice_subnetwork", args.runs)}
    load_after = os.getloadavg()
    report = {
        "what": "pydantic v2 vs msgspec for deploytool's YAML validation (issue #16 item 2)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "versions": {"pydantic": pydantic.VERSION, "msgspec": msgspec.__version__, "pyyaml": yaml.__version__},
        "runs": args.runs,
        "import_time": imports,
        "messages": messages,
        "deploytool_import": in_place,
        "choice": "pydantic",
        "why": ("pydantic's errors are data (loc, type, input, ctx), so one formatter writes deploytool's "
                "'file.yaml: key.path: problem' with the bad value and a did-you-mean for any schema; msgspec's "
                "are English text to parse ('... - at `$.bench`'), drop the key inside a mapping "
                "('peak_gops[...]') and the bad value ('got `str`'). The price is import time (see import_time, "
                "paid only by commands that read a recipe, a profile or build a pass config)."),
    }
    report["run"] = stamp(run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(args.out)
    print(json.dumps(imports, indent=1))
    for m in messages:
        print(f"{m['document']:8} {m['case']:15} pydantic: {m['pydantic']['message']}")
        print(f"{'':24} msgspec:  {m['msgspec']['message']}")


if __name__ == "__main__":
    main()
