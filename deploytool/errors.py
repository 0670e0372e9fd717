"""The errors deploytool raises for bad input.

Every user-facing failure is a :class:`DeployError` (or a subclass) with a one-line message that
names the problem. The CLI turns them into ``error: <message>`` on stderr and exit code 2, never a
traceback. Library code must not ``assert`` on user input.
"""

from __future__ import annotations


class DeployError(Exception):
    """A problem with the user's input or environment, reported in one line."""

    exit_code = 2


class InputFileError(DeployError):
    """A missing, unreadable, corrupt or truncated input file."""


def not_a_file(path, what: str = "file") -> InputFileError:
    """The error for an input ``path`` that is not a file: missing, a folder, or a device, FIFO or socket (said so,
    not "no such file")."""
    import os

    article = f"a{'n' if what[:1].lower() in 'aeiou' else ''}"
    if os.path.isdir(path):
        return InputFileError(f"{path}: is a folder, expected {article} {what}")
    if os.path.exists(path):
        return InputFileError(f"{path}: {SPECIAL_FILE}, expected {article} {what}")
    return InputFileError(f"{path}: {no_such(path, what)}")


#: what a path is whose symbolic link leads back to itself (stat: ELOOP): it exists, as a link, so it is not missing
LINK_LOOP = "a symbolic link that loops (too many levels of links)"


def looping_link(path):
    """``path`` or the first of its folders that is a symbolic link which loops (``ln -s b a; ln -s a b``), else None.
    (``Path.exists()`` is False for both a missing path and a loop.)"""
    import errno
    import os
    from pathlib import Path

    p = Path(path)
    for a in (*reversed(p.parents), p):
        try:
            os.stat(a)
        except OSError as e:  # the first part that does not resolve decides
            return a if e.errno == errno.ELOOP and os.path.islink(a) else None
    return None


def refuse_link_to_nothing(path, *, dangling_ok: bool = False) -> None:
    """An output ``path`` that is a symbolic link leading to no file or folder, or under one that loops: refused before
    any work (OutputPathError), as the same link given as an input is named (errors.no_such).

    A link that loops (``ln -s loop1 loop1``) was replaced by the output file after all the work; a dangling link
    (``ln -s nowhere out.onnx``) likewise, its target never written. Neither is written through: ``cp`` refuses
    both ('not writing through dangling symlink', 'Too many levels of symbolic links'), and where the user meant
    the output to go is not ours to guess (a target on a volume not mounted, a link left from an old run). A link
    to an existing file or folder is the output's business as before. ``dangling_ok``: a command whose output is
    a folder made where the link points (bundle, qnn compile) takes a link to one not made yet; a loop is still
    refused."""
    import errno
    import os
    from pathlib import Path

    if path is None:
        return
    loop = looping_link(path)
    if loop is not None:
        raise OutputPathError(f"{path}: {LINK_LOOP}" if loop == Path(path) else f"{path}: {loop} is {LINK_LOOP}")
    if dangling_ok or not os.path.islink(path):
        return
    try:
        os.stat(path)
    except OSError as e:
        if e.errno != errno.ENOENT:  # what else stops it is the output's own check's to say
            return
        raise OutputPathError(f"{path}: is a link to {os.readlink(path)}, which leads to nothing; remove the link or "
                              "give another path") from None


def no_such(path, what: str = "file") -> str:
    """Why an input ``path`` that does not resolve is not there: ``no such file``, or a link that loops (that one,
    or a folder of it that does) said so."""
    from pathlib import Path

    loop = looping_link(path)
    if loop is None:
        return f"no such {what}"
    return LINK_LOOP if loop == Path(path) else f"{loop} is {LINK_LOOP}"


#: what an input that exists but is neither a file nor a folder is (/dev/zero, a FIFO): never read (an endless
#: device is read until memory runs out, a FIFO waits for a writer)
SPECIAL_FILE = "not a regular file (a device, FIFO or socket)"


class OutputPathError(DeployError):
    """An output path that cannot be written."""


class ConfigError(DeployError, ValueError):
    """A config, recipe or device profile that fails validation.

    ``mentions``: the config fields the message names inside its text (``... and no calibration_data is given``),
    besides the one it starts with; a command line names its options there instead (``cli._grammar``)."""

    def __init__(self, *args: object, mentions: tuple[str, ...] = ()) -> None:
        super().__init__(*args)
        self.mentions = tuple(mentions)


class StructureError(DeployError):
    """The graph is not an encoder the structure finder recognises (names the node and why)."""


class PassRefusedError(DeployError):
    """A pass cannot be applied to this model (already packed, opset too old, ...)."""


class UnavailableError(DeployError):
    """An optional component (onnxruntime-qnn, the ARM64 emulator, a dataset) is not available."""


class VerificationError(DeployError):
    """A model that fails the verification gate (``deploytool.runtime.verify``): ONNX Runtime cannot
    load or run it, an output is not finite, or an output the pass must preserve changed.

    ``node``/``op``: the node ONNX Runtime named, when it named one. ``failure``: what failed, when ONNX Runtime
    refused a model: ``"load"`` or ``"run"`` (the checked model), ``"reference load"`` or ``"reference run"``
    (the reference it is compared with), ``"crash"`` (the process checking it died of a signal: loading or
    running it crashed ONNX Runtime); ``"not finite"`` / ``"reference not finite"``: an output of the checked
    model / of its reference holds NaN or inf; None for other checks of its outputs (not close, wrong shape).
    """

    #: the values ``failure`` takes
    FAILURES = ("load", "run", "reference load", "reference run", "crash", "not finite", "reference not finite")

    def __init__(self, message: str, *, node: str | None = None, op: str | None = None,
                 failure: str | None = None) -> None:
        super().__init__(message)
        if failure is not None and failure not in self.FAILURES:
            raise ValueError(f"unknown failure {failure!r}")
        self.node = node
        self.op = op
        self.failure = failure


#: what a process killed by each signal met, for the messages of a child that died of one (the CLI's command, the
#: verification gate's process): a crash in native code (ONNX Runtime, PyTorch, numpy) or the OOM killer's kill
SIGNAL_KINDS = {"SIGSEGV": "segmentation fault", "SIGBUS": "bus error", "SIGFPE": "arithmetic fault",
                "SIGILL": "illegal instruction", "SIGABRT": "abort", "SIGKILL": "kill (out of memory?)"}


def signal_name(signum: int) -> str:
    """``SIGSEGV`` for 11 (``signal 99`` for a number with no name here)."""
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
