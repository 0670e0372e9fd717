"""Content-addressed step cache for recipe runs.

Each step's key is the SHA-256 of its kind, its config (canonical JSON), the keys of its inputs
(the model folder's digest, the digest of every data file a step names) and a fingerprint of
deploytool's own source (:func:`code_fingerprint`) and the versions of the libraries it calls
(:func:`dependency_versions`), so changing one pass reruns that step and everything
downstream, a rerun skips what is done, and a store shared across versions never hands back what older
code made (an int8 engine or a packing fix changes the output under the same config).

Where the outputs live: with a shared ``store`` (the CLI's default: ``~/.cache/deploytool/steps``, or
``$XDG_CACHE_HOME/deploytool/steps``), in ``<store>/<kind>-<key[:16]>/``, shared by every recipe and
output folder: ``run recipes/binarybert.yaml`` reuses the teacher that ``recipes/ternarybert.yaml``
fine-tuned; ``<out>/steps/<kind>-<key[:12]>`` is then a link to it. Without a store, in
``<out>/steps/<kind>-<key[:12]>/`` as before (and such a folder from an earlier run is still reused).
A step folder is written under a temporary name and renamed when the step succeeded, so a failed step
leaves nothing half-made; it lists its files and their sizes (``.files.json``), and a finished folder whose
files are no longer those (truncated, removed, replaced by a folder) is said in one warning and made again. A store may have a size cap: at the end of a run the least recently used
entries (not those of that run) are removed until the store fits. ``deploytool cache ls``
lists it and ``deploytool cache clear`` empties it (:func:`store_entries`, :func:`clear_store`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

from deploytool import scratch


def canonical(obj: Any) -> Any:
    """A JSON-able, order-stable form of configs (dataclasses, enums, paths, tuples)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [canonical(x) for x in obj]
    if isinstance(obj, float) and obj.is_integer():
        return obj  # keep 1.0 and 1 distinct on purpose: json does
    return obj


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 of every ``.py`` and ``.c`` file of the installed deploytool package (relative path and bytes)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted([*root.rglob("*.py"), *root.rglob("*.c")]):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


#: the distributions whose code makes or measures a step's outputs besides deploytool's own: torch and transformers
#: train and export, onnx and onnx-ir write every model, ONNX Runtime runs the gates, the quantizer and the bench
_KEY_DEPENDENCIES = ("torch", "transformers", "tokenizers", "safetensors", "onnx", "onnx-ir", "onnxscript",
                     "onnxruntime", "numpy")


@functools.lru_cache(maxsize=1)
def dependency_versions() -> dict[str, str | None]:
    """The installed version of each of :data:`_KEY_DEPENDENCIES` (None: not installed), read from the
    distributions' metadata (nothing is imported)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in _KEY_DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def step_key(kind: str, config: Any, inputs: list[str]) -> str:
    # the dependencies' versions too: after `pip install -U torch onnxruntime` a store must not hand back the old
    # versions' exports, quantized files and timings as this installation's
    payload = json.dumps({"kind": kind, "config": canonical(config), "inputs": list(inputs), "v": 2,
                          "code": code_fingerprint(), "deps": dependency_versions()}, sort_keys=True,
                         separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclasses.dataclass
class StepCache:
    root: Path  # the run's output folder
    store: Path | None = None  # shared store of finished steps (None: steps live under root)
    max_bytes: int | None = None  # the store's size cap (None: no cap)
    used: set[str] = dataclasses.field(default_factory=set)  # entries of this run: never evicted by it
    run_marker: Path | None = None  # this run's own marker in the store (:func:`active_run`)

    def __post_init__(self) -> None:
        # links from a run folder to the store's entries are made with the store's path: a relative one would be
        # read relative to the link's own folder (every link of a run with --cache-dir relstore dangled)
        if self.store is not None:
            self.store = Path(os.path.abspath(self.store))

    def _local(self, kind: str, key: str) -> Path:
        return self.root / "steps" / f"{kind}-{key[:12]}"

    def dir_for(self, kind: str, key: str) -> Path:
        local = self._local(kind, key)
        if self.store is None or ((local / ".done").is_file() and not local.is_symlink()):
            return local  # no store, or a step folder an earlier run left in the output folder
        return self.store / f"{kind}-{key[:16]}"

    def done(self, kind: str, key: str) -> bool:
        """True when the step's folder is finished and whole (:func:`damage`); a finished folder that is not (a
        truncated or missing file, a file replaced by a folder) is said in one warning and removed: the step is
        made again rather than its broken result handed on."""
        folder = self.dir_for(kind, key)
        if not (folder / ".done").is_file():
            return False
        why = damage(folder)
        if why is not None:
            import logging

            logging.getLogger(__name__).warning("%s: a damaged step folder (%s); the step is made again", folder, why)
            _remove(folder)
            return False
        self._use(folder)
        return True

    def _use(self, folder: Path) -> None:
        """Mark a store entry as used now (eviction goes by last use) and link it from the run's folder."""
        if self.store is None or folder.parent != self.store:
            return
        self.used.add(folder.name)
        with contextlib.suppress(OSError):
            os.utime(folder / ".done")
        link = self.root / "steps" / folder.name[: folder.name.rfind("-") + 13]
        with contextlib.suppress(OSError):
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or not link.exists():
                if link.is_symlink():
                    link.unlink()
                link.symlink_to(folder, target_is_directory=True)

    @contextlib.contextmanager
    def building(self, kind: str, key: str, about: dict[str, Any] | None = None) -> Iterator[Path]:
        """Yield a temporary folder; it becomes the step's folder only if the block succeeds. ``about``
        (what made it: step name, recipe) is kept beside it for ``deploytool cache ls``."""
        final = self.dir_for(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        scratch.made(tmp)  # removed by the program should this process be killed (deploytool.scratch)
        try:
            yield tmp
            if about is not None:
                (tmp / ".about.json").write_text(json.dumps(about, sort_keys=True))
            _write_manifest(tmp)
            (tmp / ".done").write_text(key + "\n")
            if final.is_symlink():  # a run folder's link to a store entry (dangling after `cache clear`)
                final.unlink()
            elif _finished(final) and damage(final) is None:
                # another run on the store finished the same step meanwhile: its folder stays (that run reads it;
                # removing it failed that run's next step), this one's copy goes
                shutil.rmtree(tmp, ignore_errors=True)
            elif final.exists():
                shutil.rmtree(final)
            if tmp.exists():
                try:
                    os.replace(tmp, final)
                except OSError:
                    if not _finished(final):  # not another run's step made between the check and the rename
                        raise
                    shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._use(final)

    def remove_leftovers(self) -> list[str]:
        """Remove the temporary step folders of runs that died mid-step (SIGKILL, the OOM killer during training, a
        reboot: no cleanup ran, and a half-trained checkpoint stayed until ``cache clear``): in the run's own
        ``steps/`` (the runner holds its folder's lock) and, while no other run uses it, in the store. Returns
        their names."""
        folders = [(self.root / "steps", _TEMP_LOCAL)]  # named <kind>-<key[:12]> there
        if self.store is not None and not other_runs(self.store, exclude=self.run_marker):
            folders.append((self.store, _TEMP))
        removed = []
        for folder, temp in folders:
            if not folder.is_dir() or folder.is_symlink():
                continue
            for d in sorted(folder.iterdir()):
                if temp.fullmatch(d.name) and not d.is_symlink() and d.is_dir() and _remove(d):
                    removed.append(d.name)
        return removed

    def evict(self) -> list[str]:
        """Remove the least recently used store entries not used by this run until the store fits its
        cap; returns the names removed. The runner calls it once, at the end of a run (it walks the
        whole store)."""
        if self.store is None or self.max_bytes is None:
            return []
        if other_runs(self.store, exclude=self.run_marker):  # they may be reading any entry: the cap waits
            import logging

            logging.getLogger(__name__).info("store %s: another run is using it; its size cap is applied by a "
                                             "later run", self.store)
            return []
        entries = store_entries(self.store)
        total = sum(e.bytes for e in entries)
        removed = []
        for e in sorted(entries, key=lambda e: e.last_used):
            if total <= self.max_bytes:
                break
            if e.name in self.used:
                continue
            if _remove(e.path):
                total -= e.bytes
                removed.append(e.name)
        return removed


#: in every finished step folder: the size of each of its files (path relative to the folder -> bytes), written
#: last but ``.done``; a folder whose files are not those is not handed on (:func:`damage`)
MANIFEST = ".files.json"


def _folder_files(folder: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                out[Path(os.path.relpath(p, folder)).as_posix()] = st.st_size
    out.pop(".done", None)
    out.pop(MANIFEST, None)
    return out


def _write_manifest(folder: Path) -> None:
    (folder / MANIFEST).write_text(json.dumps(_folder_files(folder), sort_keys=True))


def damage(folder: Path) -> str | None:
    """What is wrong with a finished step folder, or None when it is whole: every file its manifest
    (:data:`MANIFEST`) lists is there, a regular file of the size it had when the step finished, and its
    ``outputs.json`` (the runner's) is readable JSON."""
    try:
        listed = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return f"no {MANIFEST}"
    except (OSError, ValueError) as e:
        return f"{MANIFEST} unreadable: {type(e).__name__}"
    if not isinstance(listed, dict):
        return f"{MANIFEST} is not a mapping"
    for rel, size in sorted(listed.items()):
        try:
            st = os.lstat(folder / rel)
        except OSError:
            return f"{rel} is missing"
        if not stat.S_ISREG(st.st_mode):
            return f"{rel} is no longer a file"
        if st.st_size != size:
            return f"{rel} has {st.st_size} bytes, {size} when the step finished"
    if "outputs.json" in listed:
        try:
            json.loads((folder / "outputs.json").read_text())
        except (OSError, ValueError):
            return "outputs.json is not readable JSON"
    return None


def _finished(folder: Path) -> bool:
    """A step folder (not a link) with its ``.done`` file: a finished step."""
    return not folder.is_symlink() and (folder / ".done").is_file()


@contextlib.contextmanager
def run_folder_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.run.lock`` for as long as the block runs: a second run into the same output folder at the same
    time is refused (:class:`~deploytool.errors.OutputPathError` naming the first's pid) instead of deleting the
    first's published models as an earlier run's and writing its report and run.json over the first's. The lock
    is the kernel's (``flock``): a run killed with SIGKILL holds it no more."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no lock
        yield
        return
    from deploytool.errors import OutputPathError

    path = out / ".run.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            except OSError:
                holder = "?"
            raise OutputPathError(f"{out}: another run (pid {holder}) is writing into this folder; wait until it "
                                  "has finished or give this run another output folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclasses.dataclass(frozen=True)
class StoreEntry:
    name: str  # <kind>-<key[:16]>
    kind: str
    path: Path
    bytes: int
    last_used: float  # epoch seconds (the .done file's mtime)
    about: dict[str, Any]
    damage: str | None = None  # what is wrong with its files (:func:`damage`), None when whole: a run makes it again


def _tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


# what the store itself makes: ``<kind>-<key[:16]>`` folders holding ``.done`` (the full key) and, while a
# step runs, ``.<kind>-<key[:16]>.<mkdtemp suffix>`` folders; nothing else in a store is its own
_ENTRY = re.compile(r"(?P<kind>[a-z0-9][a-z0-9_.-]*)-(?P<key>[0-9a-f]{16})")
_TEMP = re.compile(r"\.[a-z0-9][a-z0-9_.-]*-[0-9a-f]{16}\.[A-Za-z0-9_]+")
_TEMP_LOCAL = re.compile(r"\.[a-z0-9][a-z0-9_.-]*-[0-9a-f]{12}\.[A-Za-z0-9_]+")  # in a run folder's steps/
_KEY = re.compile(r"[0-9a-f]{64}")


def _entry_kind(d: Path) -> str | None:
    """The kind of a finished store entry, or None when ``d`` is not one the store made: a real folder (not
    a link) named ``<kind>-<key[:16]>`` whose ``.done`` file (not a link) holds the key that name starts."""
    m = _ENTRY.fullmatch(d.name)
    if m is None or d.is_symlink() or not d.is_dir():
        return None
    done = d / ".done"
    try:
        if done.is_symlink() or not done.is_file() or done.stat().st_size > 200:
            return None
        key = done.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return m["kind"] if _KEY.fullmatch(key) and key.startswith(m["key"]) else None


def _is_temp(d: Path) -> bool:
    """A step folder of the store's that never finished (:meth:`StepCache.building`'s temporary name)."""
    return bool(_TEMP.fullmatch(d.name)) and not d.is_symlink() and d.is_dir()


def store_entries(store: str | os.PathLike) -> list[StoreEntry]:
    """The finished steps in a store, most recently used first (only entries the store made: anything
    else in the folder is never listed, so never evicted or cleared), each with what is wrong with its files
    (``damage``: the check a run makes before reusing it) or None."""
    root = Path(store)
    out = []
    if not root.is_dir():
        return out
    for d in root.iterdir():
        kind = _entry_kind(d)
        if kind is None:
            continue
        try:
            about = json.loads((d / ".about.json").read_text())
        except (OSError, ValueError):
            about = {}
        try:
            last_used = (d / ".done").stat().st_mtime
        except OSError:  # removed meanwhile
            continue
        out.append(StoreEntry(d.name, kind, d, _tree_bytes(d), last_used, about if isinstance(about, dict) else {},
                              damage(d)))
    return sorted(out, key=lambda e: -e.last_used)


def not_a_store(store: str | os.PathLike) -> str | None:
    """Why ``store`` is not a step store (``<store>: not a deploytool step store (it holds ...)``): it holds something
    the store did not make (a mistyped ``--cache-dir``: a project, a home folder); None for a store or no folder."""
    root = Path(store)
    if not root.is_dir():
        return None
    foreign = sorted(d.name for d in root.iterdir() if _entry_kind(d) is None and not _is_temp(d)
                     and not (_RUN.fullmatch(d.name) and d.is_file() and not d.is_symlink()))
    if not foreign:
        return None
    # a run's outputs (`run -o D --cache-dir D`, refused since): named as such, not by the lock file sorted first
    run = "run.json" in foreign and (root / "run.json").is_file()
    first = "run.json" if run else foreign[0]
    more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
    return (f"{root}: not a deploytool step store (it holds {first!r}{more}, which the store did not make"
            f"{': a recipe run wrote its outputs there' if run else ''})")


def check_store(store: str | os.PathLike) -> None:
    """Refuse (:class:`~deploytool.errors.ConfigError`) a folder that holds anything the step store did not
    make: a mistyped ``--cache-dir`` or ``$DEPLOYTOOL_CACHE_DIR`` (a project, a home folder) is not emptied."""
    from deploytool.errors import ConfigError

    why = not_a_store(store)
    if why is not None:
        raise ConfigError(f"{why}; nothing removed")


# a run in progress: ``.run-<pid>-<8 hex>`` (a small JSON file) in the store while ``deploytool run`` uses it
_RUN = re.compile(r"\.run-(?P<pid>\d+)-[0-9a-f]{8}")


@contextlib.contextmanager
def active_run(store: Path | None) -> Iterator[Path | None]:
    """Register a run in ``store`` for as long as the block runs (its marker file's path; None without a store):
    another run's eviction (:meth:`StepCache.evict`) and :func:`clear_store` see it and leave the store's entries
    alone, instead of deleting the steps it is reading or writing."""
    if store is None:
        yield None
        return
    import secrets
    import socket
    import time

    from deploytool.onnx_io import make_folder

    make_folder(store, "step store")  # a place the file system refuses: one line, not an internal OSError
    marker = store / f".run-{os.getpid()}-{secrets.token_hex(4)}"
    marker.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
    try:
        yield marker
    finally:
        with contextlib.suppress(OSError):
            marker.unlink()


def other_runs(store: str | os.PathLike, exclude: Path | None = None) -> list[dict[str, Any]]:
    """The runs in progress that use ``store`` (their markers' contents, ``exclude`` left out); a marker whose
    process is gone (a run killed with SIGKILL, a reboot) is removed. A marker written on another host (a store
    on a shared disk) counts for a day."""
    import socket
    import time

    root, host, now, out = Path(store), socket.gethostname(), time.time(), []
    if not root.is_dir():
        return out
    for f in root.iterdir():
        if not _RUN.fullmatch(f.name) or f == exclude or f.is_symlink():
            continue
        try:
            info = json.loads(f.read_text())
            pid, started = int(info["pid"]), float(info["started"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if info.get("host") == host:
            try:
                os.kill(pid, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except OSError:  # another user's process: alive
                alive = True
        else:
            alive = now - started < 86400
        if alive:
            out.append(info)
        else:
            with contextlib.suppress(OSError):
                f.unlink()
    return out


def _remove(path: Path) -> bool:
    """Remove a store folder; True when it is gone (a folder that could not be removed is not counted)."""
    shutil.rmtree(path, ignore_errors=True)
    return not os.path.lexists(path)


def clear_store(store: str | os.PathLike, *, older_than_s: float | None = None, kind: str | None = None,
                damaged: bool = False) -> list[str]:
    """Remove finished steps (all, or those unused for ``older_than_s`` seconds, of one ``kind``, or damaged ones:
    filters combine) and leftovers of interrupted ones; returns the names removed.

    Only what the store made is touched, and a folder holding anything else is refused first
    (:func:`check_store`): ``clear_store(Path.home())`` raises instead of deleting ``~/.ssh``."""
    import time

    root = Path(store)
    removed: list[str] = []
    if not root.is_dir():
        return removed
    check_store(root)
    from deploytool.errors import ConfigError

    busy = other_runs(root)
    if busy:  # removing the steps it reads (or the folder it is writing) would fail it
        import datetime

        when = datetime.datetime.fromtimestamp(busy[0]["started"]).strftime("%H:%M:%S")
        raise ConfigError(f"{root}: a recipe run (pid {busy[0]['pid']}, started {when}) is using the store; "
                          f"nothing removed: clear it when {'they have' if len(busy) > 1 else 'it has'} finished")
    now = time.time()
    for e in store_entries(root):
        if older_than_s is not None and now - e.last_used < older_than_s:
            continue
        if kind is not None and e.kind != kind:
            continue
        if damaged and e.damage is None:
            continue
        if _remove(e.path):
            removed.append(e.name)
    if older_than_s is None and kind is None and not damaged:  # temporary folders of steps that never finished
        for d in root.iterdir():
            if _is_temp(d):
                _remove(d)
    return removed
