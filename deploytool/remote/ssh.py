"""``deploytool bench --remote user@device``: benchmark on a real device over SSH, bring the JSON back.

For each host (one after another, or in parallel):

1. **probe** (one ``ssh``; all hosts at once with ``parallel``): ``uname -m``, the Python that will run
   deploytool (its version, 3.11+: what the package declares), and whether the private venv already holds
   deploytool. A profile whose arch is not the device's, a device without Python 3.11+, or one without
   deploytool (and no ``setup``) is refused here, before anything is copied. Every host is probed before any
   host is touched, and the error names every host that failed, each with its reason.
2. **work folder** ``~/.cache/deploytool/remote/<id>`` on the device; the models (with their
   external-data files), the profile's YAML and a request file are copied there with ``scp``.
3. with ``setup`` and no venv yet: the core wheel (built here from this checkout, or given) is copied
   and installed by the device's own pip into ``~/.cache/deploytool/remote/venv`` (removed again if
   the install fails);
4. the device runs ``python -m deploytool.remote.agent request.json`` (:mod:`.agent`: the same
   ``run_benchmark`` as a local ``deploytool bench``) and the bench JSON is copied back;
5. the work folder is removed (whatever happened); the JSON's model paths are mapped back to the
   local files (so ``deploytool report`` finds them for projections), a ``remote`` record says where
   it ran, and the file is written atomically.

Transport is the system's OpenSSH client (``ssh``/``scp``) with the user's own configuration; the tool
adds only ``BatchMode=yes`` (never a password prompt) and ``ConnectTimeout``. Host keys are checked as
``ssh`` checks them: options that switch the check off are refused. Nothing runs on the device but
``sh`` glue, its Python and deploytool in its venv and folder.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as _dt
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploytool import scratch
from deploytool.choices import config, one_or_many
from deploytool.errors import ConfigError, DeployError

logger = logging.getLogger(__name__)

__all__ = ["REMOTE_ROOT", "RemoteConfig", "RemoteError", "RemoteRun", "bench_remote", "output_paths"]

REMOTE_ROOT = ".cache/deploytool/remote"  # under the device user's home
_AGENT_PID = "agent.pid"  # in the work folder: the agent's process group, stopped if the run is cut off
MIN_PYTHON = (3, 11)  # pyproject.toml requires-python
_HOST = re.compile(r"^(?:[A-Za-z0-9._%+-]+@)?(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])$")
_OPTION = re.compile(r"^[A-Za-z][A-Za-z0-9]*\s*[= ]\s*\S.*$")
# ssh options a user may not hand to the tool: they would switch host-key checking off
# (every spelling ssh reads as "off": OpenSSH's readconf.c multistate_strict_hostkey has "false" too, and ssh strips
# the quotes around a value)
_UNSAFE = {"stricthostkeychecking": {"no", "off", "false", "accept-new"}, "userknownhostsfile": {"/dev/null"}}


class RemoteError(DeployError):
    """A device that cannot be reached, lacks Python/deploytool, or whose bench failed (one line)."""


class _NoAnswer(RemoteError):
    """The command did not end within its time limit: what it started on the device may still run."""


@config
@dataclasses.dataclass(frozen=True)
class RemoteConfig:
    """Where and how to run a benchmark over SSH.

    hosts: ``[user@]host`` destinations (ssh config ``Host`` aliases work); several run in turn, or at
      once with ``parallel``.
    ssh_options: ``Key=Value`` options for both ``ssh`` and ``scp`` (``Port=2222``,
      ``UserKnownHostsFile=...``, ``IdentityFile=...``), as ``ssh -o`` takes them.
    ssh_config: an ssh config file (``ssh -F``); None: the user's own.
    remote_python: the device's Python that has deploytool (e.g. a venv's ``bin/python``); None: the
      private venv ``~/.cache/deploytool/remote/venv``.
    setup: create that venv and install the core wheel when it does not hold deploytool yet.
    wheel: the deploytool wheel to install with ``setup``; None: built from this checkout.
    pip_args: extra arguments for the device's ``pip install`` (e.g. ``("--find-links", DIR)``); one string is one
      argument (as one string in ``ssh_options`` is one option).
    connect_timeout_s: ssh ``ConnectTimeout``; an unreachable host fails within about this time.
    timeout_s: limit for the whole bench on one device.
    """

    hosts: tuple[str, ...]
    ssh_options: tuple[str, ...] = ()
    ssh_config: Path | None = None
    remote_python: str | None = None
    setup: bool = False
    wheel: Path | None = None
    pip_args: tuple[str, ...] = ()
    parallel: bool = False
    connect_timeout_s: int = 10
    timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        hosts = (self.hosts,) if isinstance(self.hosts, str) else tuple(self.hosts)
        if not hosts:
            raise ConfigError("remote: give at least one [user@]host")
        for h in hosts:
            if not isinstance(h, str) or not _HOST.match(h):
                raise ConfigError(f"remote: {h!r} is not a [user@]host destination")
        if len(set(hosts)) != len(hosts):
            raise ConfigError("remote: a host is given twice")
        object.__setattr__(self, "hosts", hosts)
        opts = tuple(one_or_many(self.ssh_options))  # one "Port=2222" is one option, not its letters
        for o in opts:
            if not isinstance(o, str) or not _OPTION.match(o):
                raise ConfigError(f"ssh option {o!r}: expected Key=Value, as ssh -o takes it (e.g. Port=2222)")
            key, value = re.split(r"\s*[= ]\s*", o.strip(), maxsplit=1)
            try:
                parts = shlex.split(value, posix=False)
            except ValueError:  # an unclosed quote: ssh refuses it itself
                parts = value.split()
            words = {w.strip("\"'").lower() for w in parts}
            if words & _UNSAFE.get(key.lower(), set()):
                raise ConfigError(f"ssh option {o!r}: deploytool does not switch host-key checking off; add the "
                                  "device's key to known_hosts (ssh-keyscan, or a first interactive ssh)")
        object.__setattr__(self, "ssh_options", opts)
        if self.ssh_config is not None:
            cfg = Path(self.ssh_config)
            if not cfg.is_file():
                raise ConfigError(f"ssh config {cfg}: no such file")
            object.__setattr__(self, "ssh_config", cfg)
        if self.wheel is not None:
            w = Path(self.wheel)
            if not (w.is_file() and w.suffix == ".whl"):
                raise ConfigError(f"wheel {w}: not a .whl file")
            object.__setattr__(self, "wheel", w)
        if self.remote_python is not None and (not isinstance(self.remote_python, str) or not self.remote_python.strip()):
            raise ConfigError("remote_python: expected the path of the device's Python")
        if self.remote_python is not None and self.setup:
            raise ConfigError("remote: --remote-setup installs into deploytool's own venv; it does not take "
                              "--remote-python")
        ct = self.connect_timeout_s
        if isinstance(ct, bool) or not isinstance(ct, int) or not 1 <= ct <= 600:
            raise ConfigError(f"connect_timeout_s: an integer number of seconds in [1, 600], got {ct!r}")
        t = self.timeout_s
        if isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0:
            raise ConfigError(f"timeout_s: a positive number of seconds, got {t!r}")
        object.__setattr__(self, "pip_args", tuple(str(a) for a in one_or_many(self.pip_args)))


@dataclasses.dataclass(frozen=True)
class RemoteRun:
    host: str
    output: Path
    report: dict[str, Any]


# ------------------------------------------------------------------------------------ transport
class _Ssh:
    def __init__(self, config: RemoteConfig, host: str) -> None:
        self.config, self.host = config, host
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={config.connect_timeout_s}"]
        for o in config.ssh_options:
            opts += ["-o", o]
        if config.ssh_config is not None:
            opts = ["-F", str(config.ssh_config), *opts]
        self.opts = opts

    def run(self, script: str, *, timeout: float | None = None, what: str) -> str:
        cmd = [_tool("ssh"), *self.opts, self.host, "--", script]
        return self._call(cmd, timeout=timeout, what=what)

    def put(self, files: Sequence[Path], remote_dir: str, *, what: str) -> None:
        cmd = [_tool("scp"), "-q", "-B", *self.opts, *[str(f) for f in files], f"{self.host}:{remote_dir}/"]
        self._call(cmd, timeout=self.config.timeout_s, what=what)

    def get(self, remote_file: str, local: Path, *, what: str) -> None:
        cmd = [_tool("scp"), "-q", "-B", *self.opts, f"{self.host}:{remote_file}", str(local)]
        self._call(cmd, timeout=self.config.timeout_s, what=what)

    def _call(self, cmd: list[str], *, timeout: float | None, what: str) -> str:
        limit = timeout if timeout is not None else self.config.connect_timeout_s + 30
        logger.info("%s: %s", self.host, " ".join(shlex.quote(c) for c in cmd))
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise _NoAnswer(f"{self.host}: {what}: no answer within {limit:g} s") from None
        if r.returncode != 0:
            lines = [ln for ln in (r.stderr or "").strip().splitlines() if ln.strip()]
            errs = [ln for ln in lines if ln.startswith("error:")]
            last = (errs or lines or [f"exit code {r.returncode}"])[-1].strip()
            if (r.returncode == 255 and cmd[0].endswith("ssh")) or (cmd[0].endswith("scp") and _unreachable(last)):
                raise RemoteError(f"cannot reach {self.host}: {last}")
            raise RemoteError(f"{self.host}: {what} failed: {last.removeprefix('error: ')}")
        return r.stdout


def _unreachable(line: str) -> bool:
    return any(s in line for s in ("Connection refused", "Connection timed out", "Could not resolve",
                                    "Host key verification failed", "Permission denied", "No route to host",
                                    "Connection closed"))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RemoteError(f"--remote needs the OpenSSH client: '{name}' is not on PATH (Debian: apt-get install "
                          "openssh-client)")
    return path


# ---------------------------------------------------------------------------------------- probe
# what the device's shell start-up files print (a .bashrc's greeting) comes first on stdout: the answers are read
# after this line
_MARK = "--deploytool-answer--"
_PROBE = r"""
echo """ + _MARK + r"""
uname -m
PY={py}
echo "$PY" | tr -d ' '
if command -v "$PY" >/dev/null 2>&1; then
  "$PY" -c 'import sys; print("%d.%d.%d" % tuple(sys.version_info[:3]))' 2>/dev/null || echo broken
else
  echo none
fi
if "$PY" -c 'import deploytool.remote.agent' >/dev/null 2>&1; then echo deploytool; else echo no-deploytool; fi
"""


def _answer(stdout: str) -> str:
    """What a command printed after :data:`_MARK` (without what the device's shell printed before it)."""
    return stdout.rpartition(_MARK + "\n")[2].strip() if _MARK in stdout else stdout.strip()


@dataclasses.dataclass(frozen=True)
class _Probe:
    arch: str
    python: str  # the command on the device
    version: tuple[int, ...] | None
    has_deploytool: bool
    needs_setup: bool


def _venv_python() -> str:
    return f'"$HOME"/{REMOTE_ROOT}/venv/bin/python'


def _probe(ssh: _Ssh, config: RemoteConfig, profile) -> _Probe:
    venv = _venv_python()
    if config.remote_python is not None:
        py = shlex.quote(config.remote_python)
    else:  # the private venv when it holds deploytool, else the system python3 (for setup)
        py = f"$( [ -x {venv} ] && echo {venv} || echo python3 )"
    out = _answer(ssh.run(_PROBE.format(py=py), what="probe")).split()
    if len(out) < 4:
        raise RemoteError(f"{ssh.host}: unexpected answer to the probe: {' '.join(out)!r}")
    arch, resolved, ver, dt = out[0], out[1], out[2], out[3]
    shown = config.remote_python or "python3"
    if ver in ("none", "broken"):
        raise RemoteError(f"{ssh.host}: no usable Python at '{shown}' on the device (deploytool needs Python "
                          f"{'.'.join(map(str, MIN_PYTHON))}+)")
    try:
        version = tuple(int(x) for x in ver.split("."))
    except ValueError:
        raise RemoteError(f"{ssh.host}: cannot read the device's Python version ({ver!r})") from None
    if version < MIN_PYTHON:
        raise RemoteError(f"{ssh.host}: Python {ver} at '{shown}'; deploytool needs Python "
                          f"{'.'.join(map(str, MIN_PYTHON))}+")
    if profile is not None and not profile.from_host and arch != profile.arch.value:
        raise RemoteError(f"{ssh.host}: the device is {arch} but profile '{profile.name}' is "
                          f"{profile.arch.value}: pick the device's profile")
    has = dt == "deploytool"
    if not has and config.remote_python is not None:
        raise RemoteError(f"{ssh.host}: '{config.remote_python}' cannot import deploytool (install it there, or "
                          "use --remote-setup for a private venv)")
    if not has and not config.setup:
        raise RemoteError(f"{ssh.host}: deploytool is not installed in ~/{REMOTE_ROOT}/venv; pass --remote-setup "
                          "to install it there, or --remote-python for a Python that has it")
    # the venv's python as the device resolved it (its home), or the one given
    python = shlex.quote(config.remote_python) if config.remote_python else (shlex.quote(resolved) if has else venv)
    return _Probe(arch, python, version, has, not has)


def _probe_all(config: RemoteConfig, profile) -> dict[str, _Probe]:
    """Every host probed (at once with ``parallel``: the wait is the slowest host's, not the sum); one
    :class:`RemoteError` naming each host that failed, with its reason (it named the first only, so a sweep over
    four devices found the unreachable ones one run at a time)."""

    def one(host: str) -> _Probe | RemoteError:
        try:
            return _probe(_Ssh(config, host), config, profile)
        except RemoteError as e:
            return e

    if config.parallel and len(config.hosts) > 1:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(config.hosts)) as pool:
            answers = dict(zip(config.hosts, pool.map(one, config.hosts)))
    else:
        answers = {h: one(h) for h in config.hosts}
    # one reason once (ssh missing here fails every host alike)
    failed = list(dict.fromkeys(str(a) for a in answers.values() if isinstance(a, RemoteError)))
    if failed:
        n = sum(isinstance(a, RemoteError) for a in answers.values())
        head = (f"{n} of {len(config.hosts)} hosts failed the check before the bench (nothing was copied to any "
                "device): ") if n > 1 else ""
        raise RemoteError(head + "; ".join(failed))
    return answers  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------ run
def output_paths(output: str | os.PathLike, hosts: Sequence[str]) -> list[Path]:
    """One host: ``output``; several: ``<stem>-<host>.json`` beside it."""
    out = Path(output)
    if len(hosts) == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{re.sub(r'[^A-Za-z0-9._-]+', '_', h)}{out.suffix or '.json'}") for h in hosts]


def _model_files(models: Sequence[Path]) -> list[tuple[Path, list[Path]]]:
    """Each model with its external-data files (which must sit beside it: they are copied flat)."""
    from deploytool.onnx_io import external_data_files

    out = []
    for m in models:
        data = external_data_files(m)
        for d in data:
            if d.parent != m.resolve().parent:
                raise ConfigError(f"{m}: external data {d} is not beside the model; --remote copies a model "
                                  "folder flat")
        out.append((m, data))
    return out


def _profile_file(profile) -> Path | None:
    """The YAML file ``profile`` was loaded from, if it is one."""
    return Path(profile.path) if profile.path and Path(profile.path).is_file() else None


def _request(bench, names: list[str], profile_ref: str | None) -> dict[str, Any]:
    from deploytool.remote.agent import PROTOCOL

    return {"protocol": PROTOCOL, "models": names, "seq_lens": list(bench.seq_lens), "batch": bench.batch,
            "threads": bench.threads, "warmup": bench.warmup, "runs": bench.runs, "seed": bench.seed,
            "profile": profile_ref, "busy": bench.busy.value, "schedule": bench.schedule.value,
            "block_runs": bench.block_runs, "prime_runs": bench.prime_runs, "thread_pool": bench.thread_pool.value,
            "wait_quiet_s": bench.wait_quiet_s, "output": "bench.json"}


def _build_wheel(dest: Path) -> Path:
    """deploytool's wheel from this checkout (no dependencies; the device's pip resolves those)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise RemoteError("--remote-setup needs deploytool's wheel: this install has no source checkout to build "
                          "it from; pass the wheel (RemoteConfig.wheel)")
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dest), str(root)]
    # without the compiled module, which is built for this machine's Python (the device's may be aarch64 or
    # another version: pip refuses such a wheel there); the numpy code runs there, the same numbers
    from deploytool.settings import pure_wheel_env

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=pure_wheel_env())
    wheels = sorted(dest.glob("deploytool-*.whl"))
    if r.returncode != 0 or not wheels:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        raise RemoteError(f"cannot build deploytool's wheel for --remote-setup: {last}")
    return wheels[-1]


def _one_host(host: str, bench, config: RemoteConfig, probe: _Probe, files, out: Path,
              wheel: Path | None, staging: Path) -> RemoteRun:
    ssh = _Ssh(config, host)
    job = uuid.uuid4().hex[:12]
    rdir = f'"$HOME"/{REMOTE_ROOT}/{job}'
    home = _answer(ssh.run(f"mkdir -p {rdir} && cd {rdir} && echo {_MARK} && pwd", what="creating the work folder"))
    if not home.startswith("/") or "\n" in home:
        raise RemoteError(f"{host}: unexpected answer when creating the work folder: {home[:80]!r}")
    qdir = shlex.quote(home)
    local = staging / host.replace("/", "_")
    local.mkdir()
    python = probe.python
    try:
        names = [m.name for m, _ in files]
        prof = bench.profile
        profile_ref = None
        copies = [f for m, data in files for f in (m, *data)]
        prof_file = _profile_file(prof) if prof is not None else None
        if prof_file is not None:
            # under its own name: the device's loader wants a profile's name to be its file's (a user's profile of
            # the machine, from_host, goes so too: the device builds it from itself, with the user's budgets)
            profile_ref = f"{prof.name}.yaml"
            shutil.copy(prof_file, local / profile_ref)
            copies.append(local / profile_ref)
        elif prof is not None:  # a host profile made in Python: the device's own of that name
            profile_ref = prof.name
        (local / "request.json").write_text(json.dumps(_request(bench, names, profile_ref)))
        copies.append(local / "request.json")
        if probe.needs_setup:
            copies.append(wheel)
        ssh.put(copies, home, what="copying the models")
        if probe.needs_setup:
            venv = f'"$HOME"/{REMOTE_ROOT}/venv'
            pip = " ".join(shlex.quote(a) for a in config.pip_args)
            script = (f"python3 -m venv {venv} && {venv}/bin/python -m pip install -q --disable-pip-version-check "
                      f"{pip} {qdir}/{shlex.quote(wheel.name)} >{qdir}/pip.log 2>&1 || "
                      f"{{ tail -n 1 {qdir}/pip.log | sed 's/^/error: /' >&2; rm -rf {venv}; exit 3; }}")
            ssh.run(script, timeout=config.timeout_s, what="installing deploytool in its venv")
        # the agent replaces the shell (exec), which sshd made a session and process-group leader: its pid,
        # written first, is the group of the agent and its bench worker
        agent_alive = True
        try:
            ssh.run(f"cd {qdir} && echo $$ > {_AGENT_PID} && exec {python} -m deploytool.remote.agent request.json",
                    timeout=config.timeout_s, what="the benchmark")
            agent_alive = False
        except _NoAnswer:
            raise
        except RemoteError:  # it ended (with an error)
            agent_alive = False
            raise
        ssh.get(f"{home}/bench.json", local / "bench.json", what="copying the results back")
    finally:
        # the device keeps nothing of this run (the venv stays: it is the install); a bench cut off here (timed
        # out, interrupted) would run on in a removed folder: its process group is stopped first
        stop = (f"p=$(cat {qdir}/{_AGENT_PID} 2>/dev/null) && [ -n \"$p\" ] && "
                "{ kill -TERM -- -\"$p\" 2>/dev/null || kill -TERM \"$p\" 2>/dev/null; }; ") \
            if agent_alive else ""
        try:
            ssh.run(f"{stop}rm -rf {qdir}", what="removing the work folder")
        except RemoteError as e:
            logger.warning("%s: could not remove %s: %s", host, home, e)
    report = _read_result(local / "bench.json", host)
    report = _localize(report, files, host, home, python)
    from deploytool.onnx_io import atomic_write

    with atomic_write(out) as f:
        json.dump(report, f, indent=2)
    return RemoteRun(host, out, report)


def _read_result(path: Path, host: str) -> dict[str, Any]:
    """The bench JSON the device sent back, checked as ``deploytool report`` checks one (schema and fields): a
    device whose deploytool writes something else (garbage, an old format) is one line, not a file written."""
    from deploytool.bench import load_report
    from deploytool.errors import InputFileError

    try:
        return load_report(path)
    except InputFileError as e:
        why = str(e).replace(f"{path}: ", "", 1)
        raise RemoteError(f"{host}: the device's bench result is not usable ({why}); is deploytool there the "
                          "same version as here?") from None


def _localize(report: dict[str, Any], files, host: str, home: str, python: str) -> dict[str, Any]:
    """The device's copies -> the local model paths; a ``remote`` record of where it ran."""
    local = {m.name: str(m) for m, _ in files}

    def back(p: str) -> str:
        return local.get(Path(p).name, p)

    for r in report.get("results", []):
        r["model"] = back(r["model"])
    for m in report.get("models", []):
        if isinstance(m, dict) and "path" in m:
            m["path"] = back(m["path"])
    cfg = report.get("config") or {}
    if "models" in cfg:
        cfg["models"] = [back(p) for p in cfg["models"]]
    report["remote"] = {"host": host, "work_dir": home, "python": python,
                        "fetched_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    return report


def bench_remote(bench, config: RemoteConfig, output: str | os.PathLike) -> list[RemoteRun]:
    """Benchmark ``bench`` (a :class:`~deploytool.bench.BenchConfig`) on every host of ``config``; write one
    bench JSON per host (``output``, or ``<stem>-<host>.json`` for several) and return them.

    Every host is probed first (reachable, Python 3.11+, the profile's arch, deploytool or ``setup``);
    a failure there touches no device. A host that fails later leaves nothing behind on it, no output
    file for it, and raises :class:`RemoteError` once the others are done.
    """
    from deploytool.bench import BenchConfig
    from deploytool.onnx_io import check_output_path, check_writable

    from deploytool.choices import require_config

    require_config(bench, BenchConfig, "bench_remote")  # a DeployError (one line, exit 2), as every entry point's
    require_config(config, RemoteConfig, "bench_remote")
    if bench.worker_python:
        raise ConfigError("remote: a worker_python (QEMU) run cannot also go over SSH")
    outs = output_paths(output, config.hosts)
    for o in outs:  # never an input, and a folder that can really be written: before any device is probed
        check_output_path(o, inputs=bench.models)
        check_writable(o)
    from deploytool.bench.runner import plan_model

    for m in bench.models:  # a bad model (or a length it cannot take) fails here, before any device is touched
        plan_model(m, bench.batch, bench.seq_lens)
    files = _model_files(bench.models)
    names = [m.name for m, _ in files]
    if len(set(names)) != len(names):
        raise ConfigError("remote: two models have the same file name; --remote copies them into one folder")
    prof = bench.profile
    if prof is not None and not prof.from_host and _profile_file(prof) is None:
        raise ConfigError(f"remote: profile '{prof.name}' has no YAML file to send to the device; give the "
                          "profile's file (or load it with load_profile)")
    probes = _probe_all(config, bench.profile)
    with scratch.temporary_directory("deploytool-remote-") as tmp:
        staging = Path(tmp)
        wheel = None
        if any(p.needs_setup for p in probes.values()):
            wheel = config.wheel or _build_wheel(staging)

        def go(i: int) -> RemoteRun:
            h = config.hosts[i]
            return _one_host(h, bench, config, probes[h], files, outs[i], wheel, staging)

        runs: list[RemoteRun] = []
        errors: list[RemoteError] = []
        if config.parallel and len(config.hosts) > 1:
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(config.hosts)) as pool:
                futs = [pool.submit(go, i) for i in range(len(config.hosts))]
                for f in futs:
                    try:
                        runs.append(f.result())
                    except RemoteError as e:
                        errors.append(e)
        else:
            for i in range(len(config.hosts)):
                try:
                    runs.append(go(i))
                except RemoteError as e:
                    errors.append(e)
    if errors:
        done = f" (written: {', '.join(str(r.output) for r in runs)})" if runs else ""
        raise RemoteError(f"{errors[0]}{done}" + (f"; and {len(errors) - 1} more host(s) failed" if len(errors) > 1 else ""))
    return runs
