"""The ``deploytool`` command line: click on top of the library.

Each command lives in its own module under ``deploytool.cli`` and is imported only when invoked, so
``deploytool inspect`` never pays for importing torch. Every command parses options, builds one typed
config, calls one library function and prints its result. A :class:`DeployError` becomes
``error: <message>`` on stderr and exit code 2, never a traceback (``--debug`` shows one).
"""

from __future__ import annotations

import errno
import gc
import importlib
import logging
import os
import sys

import click

from deploytool.errors import SIGNAL_KINDS, DeployError, signal_name

# command name -> "module:attribute" (imported lazily)
COMMANDS: dict[str, tuple[str, str]] = {
    "export": ("deploytool.cli.export_cmd:export", "Export a PyTorch/Hugging Face encoder to ONNX, validated."),
    "inspect": ("deploytool.cli.inspect_cmd:inspect", "Show an ONNX encoder's structure, parameters, sizes and FLOPs."),
    "bench": ("deploytool.cli.bench_cmd:bench", "Benchmark ONNX models with ONNX Runtime in a clean process."),
    "slice": ("deploytool.cli.prune_cmd:slice_", "DynaBERT width/depth slicing of an ONNX encoder."),
    "prune-heads": ("deploytool.cli.prune_cmd:prune_heads", "Physically remove attention heads."),
    "prune-ffn": ("deploytool.cli.prune_cmd:prune_ffn", "Physically remove FFN neurons."),
    "reorder": ("deploytool.cli.prune_cmd:reorder", "Permute heads and neurons by importance (outputs unchanged)."),
    "quantize": ("deploytool.cli.quant_cmd:quantize", "int8 (dynamic/static) or fp16 quantization."),
    "pack": ("deploytool.cli.quant_cmd:pack", "Ternary/binary weight quantization with real bit packing."),
    "repack": ("deploytool.cli.quant_cmd:repack", "Move a packed file to another runtime (same codes, no fp32)."),
    "train": ("deploytool.cli.train_cmd:train", "Fine-tune a teacher model on a dataset."),
    "importance": ("deploytool.cli.train_cmd:importance", "Head and FFN-neuron importance (and reorder) of a model."),
    "dynabert": ("deploytool.cli.train_cmd:dynabert", "DynaBERT width/depth-adaptive distillation."),
    "qat": ("deploytool.cli.train_cmd:qat", "TernaryBERT/BinaryBERT quantization-aware distillation."),
    "eval": ("deploytool.cli.train_cmd:eval_", "Accuracy/F1 of a PyTorch folder or ONNX model on a dataset."),
    "distill": ("deploytool.cli.distill_cmd:distill", "TinyBERT-style distillation into a smaller student shape."),
    "profiles": ("deploytool.cli.device_cmd:profiles", "List and show device profiles."),
    "verify-arm64": ("deploytool.cli.device_cmd:verify_arm64", "Run a model under QEMU aarch64 and compare with the host."),
    "report": ("deploytool.cli.device_cmd:report", "Write JSON/Markdown/HTML device benchmark reports."),
    "fit": ("deploytool.cli.device_cmd:fit", "Pick the best variant that meets a device's budget."),
    "qnn": ("deploytool.cli.qnn_cmd:qnn", "Snapdragon NPU: QNN coverage check and offline compile."),
    "bundle": ("deploytool.cli.bundle_cmd:bundle", "Phone bundle: .ort model, operator config, EP settings, manifest."),
    "run": ("deploytool.cli.run_cmd:run", "Run a recipe: export, passes, benchmarks, report."),
    "cache": ("deploytool.cli.run_cmd:cache", "List or clear the store of finished recipe steps."),
}


class _GivenPath(click.Path):
    """click.Path refusing an empty or blank value: click made ``-o ""`` the path ``.`` (report wrote into the
    current folder, fit blamed '.: is a directory', bench dropped its JSON without a word)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            where = ""
            if ctx is not None and param is not None and param.name and getattr(param, "envvar", None) \
                    and ctx.get_parameter_source(param.name) is click.core.ParameterSource.ENVIRONMENT:
                where = f" in {param.envvar}"
                if not value and getattr(param, "multiple", False):  # only a list of folders has separators (not
                    # DEPLOYTOOL_ARM64_HOME=' ', nor a blank entry, which no separator made)
                    where += " (an empty entry: a separator at its start or end, or two together)"
            self.fail(f"{'empty' if not value else 'blank'} path {value!r}{where}", param, ctx)
        return super().convert(value, param, ctx)


def _refuse_blank_paths(cmd: click.Command) -> click.Command:
    """Every path parameter of ``cmd`` (and of its subcommands) refuses an empty value."""
    for param in cmd.params:
        if type(param.type) is click.Path:
            param.type.__class__ = _GivenPath
    for sub in getattr(cmd, "commands", {}).values():
        _refuse_blank_paths(sub)
    return cmd


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `deploytool slice m.onnx ... --debug`, as a failure's "rerun with --debug" is read: the program's flag
        # wherever it is typed (before a `--`), not "No such option" from the command (_supervise reads it so too)
        cut = args.index("--") if "--" in args else len(args)
        if "--debug" in args[1:cut]:
            args = ["--debug", *(a for a in args[:cut] if a != "--debug"), *args[cut:]]
        return super().parse_args(ctx, args)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module, attr = target.split(":")
        try:
            mod = importlib.import_module(module)
            return _refuse_blank_paths(getattr(mod, attr))
        except (ImportError, AttributeError) as e:
            help_ = COMMANDS[name][1]
            reason = f"{type(e).__name__}: {e}"  # `e` itself is unbound once the except block ends

            @click.command(name, help=help_, context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args: tuple[str, ...]) -> None:
                raise DeployError(f"command '{name}' is not available in this install ({reason})")

            return unavailable

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DeployError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {_one_line(e)}", err=True)
            sys.exit(e.exit_code)
        except click.UsageError as e:  # wrong flag/value: one line like a DeployError, not click's 4-line usage
            where = e.ctx.command_path if e.ctx else "deploytool"
            click.echo(f"error: {_one_line(e.format_message())} (see '{where} --help')", err=True)
            sys.exit(e.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `deploytool inspect m.onnx | head`: the reader left, not our bug
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except OSError:
                pass
            sys.exit(141)  # 128 + SIGPIPE, as a shell tool
        except Exception as e:  # a bug in deploytool: still one line, but say it is ours
            cause = _deploy_cause(e)
            if cause is not None and not (ctx.obj and ctx.obj.get("debug")):
                click.echo(f"error: {_one_line(cause)}", err=True)
                sys.exit(cause.exit_code)
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if isinstance(e, OSError) and e.errno in _ENVIRONMENT_ERRNOS:  # the disk, not a bug in deploytool
                target = e.filename or ctx.meta.get("deploytool.output")
                where = f" writing {target}" if target else ""
                click.echo(f"error: {e.strerror or _one_line(e)}{where}; outputs are written whole or not at all",
                           err=True)
                sys.exit(2)
            click.echo(f"error: internal error {type(e).__name__}: {_one_line(e)} (rerun with --debug for a traceback)",
                       err=True)
            sys.exit(1)


#: errors of the disk or file system a command writes to (full, over quota, read-only, too big, failing)
_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO})


def _deploy_cause(e: BaseException) -> DeployError | None:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, DeployError):
            return e
        e = e.__cause__ or e.__context__
    return None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


class _PlainWarnings(logging.Formatter):
    """deploytool's own warnings and errors as the commands' own lines read ('warning: ...', as bench and report
    print theirs, and 'deprecated: ...'), not 'WARNING deploytool.passes.pack_weights: ...'; other libraries'
    records keep their level and logger's name (where a line comes from is worth saying there). -v and --debug
    show every record in the full form."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name.split(".")[0] == "deploytool" and record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {record.getMessage()}"
        return super().format(record)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deploytool")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def main(ctx: click.Context, debug: bool, verbose: int) -> None:
    """deploytool: Transformer encoders from PyTorch to small, fast, measured ONNX models."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    from deploytool import settings

    bad_switch = settings.switch_error()  # DEPLOYTOOL_NO_FORK=ture was taken as set, EAGER_IMPORTS=yes as not
    if bad_switch is not None:
        raise DeployError(bad_switch)
    if debug:  # the command runs in this process (no fork, see _supervise): a native crash shows where it was
        import faulthandler

        faulthandler.enable()
    level = logging.WARNING - 10 * min(verbose, 2)
    before = list(logging.getLogger().handlers)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not verbose and not debug:  # only the handler made here (a host program's or pytest's keep their own form)
        for handler in logging.getLogger().handlers:
            if handler not in before:
                handler.setFormatter(_PlainWarnings("%(levelname)s %(name)s: %(message)s"))
    if not verbose and not debug:
        # an error is one line: numpy's RuntimeWarnings (NaN weights), onnx_ir's notes on an invalid graph and ORT's
        # fusion scripts' remarks would print their own lines (with source lines) before it; -v shows them
        import warnings

        warnings.simplefilter("ignore", RuntimeWarning)
        logging.getLogger("onnx_ir").setLevel(logging.ERROR)


def entry() -> None:
    """The ``deploytool`` program (console script and ``python -m deploytool``): :func:`main`, then an exit
    without the interpreter's final garbage collections over every object left (the imported packages'
    tens of thousands and the result's graph: 45-85 ms of every command, BERT-base reorder, Zen 3).

    ``gc.freeze()`` as the command ends, whatever its exit code, moves what exists into the collector's
    permanent generation, which those collections skip. Everything else of an exit still runs: atexit
    handlers, ``weakref.finalize`` callbacks (temporary folders), and each object's release as its module
    is cleared; the files a command writes are closed by then (each is written in a ``with`` block and
    renamed into place). Not in :func:`main` itself: tests and scripts call that in a process that goes on.
    The last atexit callback removes deploytool's temporary folders still listed (:mod:`deploytool.scratch`).
    """
    _supervise()
    import atexit

    from deploytool.scratch import remove_left

    # registered first, so run last: after the threads are joined and the other exit-time clean-ups ran, what is
    # still listed is a temporary folder whose own removal a signal cut short (deploytool.scratch)
    atexit.register(remove_left)
    try:
        main()
    finally:
        gc.freeze()


class _Relay:
    """The supervising parent's handler of SIGINT, SIGTERM and SIGHUP: passes each on to the command's process
    ``pid`` unless that process got it itself, at most once per signal (its own handlers unwind it and remove
    what it made; a second signal would interrupt that clean-up). The terminal's ^C and a kill of the process
    group reach both processes; ``kill PID`` reaches the parent alone. The child reports every signal it
    receives on the pipe ``fd`` (``signal.set_wakeup_fd``); a report not seen within :attr:`grace_s` means it
    did not get this one."""

    grace_s = 0.5

    def __init__(self, pid: int, fd: int) -> None:
        self.pid, self.fd = pid, fd
        self.received: dict[int, int] = {}  # signal -> the child's reports not yet matched to one of ours
        self.forwarded: set[int] = set()
        self.closed = False
        os.set_blocking(fd, False)

    def _read(self) -> None:
        while not self.closed:
            try:
                data = os.read(self.fd, 512)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the child closed its end (it is gone): no report will come
                self.closed = True
                return
            for n in data:
                self.received[n] = self.received.get(n, 0) + 1

    def __call__(self, signum: int, _frame: object) -> None:
        import select
        import time

        deadline = time.monotonic() + self.grace_s
        while True:
            self._read()
            if self.received.get(signum):
                self.received[signum] -= 1  # the child's own: its handler is at work already
                return
            left = deadline - time.monotonic()
            if self.closed or left <= 0:
                break
            select.select([self.fd], [], [], left)
        if signum in self.forwarded:
            return
        self.forwarded.add(signum)
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass


def _journal_fd() -> int:
    """A new file with no name (gone with its last descriptor), read and written at the descriptor's shared
    offset: the command's process appends to it, the program reads it after (:mod:`deploytool.scratch`)."""
    import tempfile

    try:
        return os.open(tempfile.gettempdir(), os.O_TMPFILE | os.O_RDWR, 0o600)
    except (AttributeError, OSError):  # not Linux, or a file system without unnamed files
        fd, path = tempfile.mkstemp(prefix="deploytool-journal-")
        os.unlink(path)
        return fd


def _supervise() -> None:
    """Run the command in a forked child and wait for it (POSIX; not with ``--debug``): a command whose process
    dies of a signal (a segmentation fault in ONNX Runtime, PyTorch or numpy on some input; the OOM killer)
    then ends in one ``error:`` line and exit 2 like any other failure, instead of a silent exit 139. Returns in
    the child (or where there is no fork); the parent exits with the child's code. The fork happens before
    any heavy import (click and deploytool's errors only: ~1 ms). SIGINT, SIGTERM and SIGHUP sent to the
    parent reach the child once (:class:`_Relay`: not again where the child got it itself, as the terminal's ^C
    or a kill of the process group reaches both), so ``kill -INT`` of the program's pid interrupts the command
    (exit 130) as ^C does; the child gets SIGTERM should the parent die first (Linux). One that reaches the
    child as it exits (its atexit callbacks, finalizers) ends it there with 128 + the signal, no traceback; one
    ignored from the start (nohup) stays ignored. Outputs are written atomically, so a crash or an interrupt
    leaves none half-written."""
    import signal

    from deploytool import settings

    if not hasattr(os, "fork") or "--debug" in sys.argv[1:] or settings.no_fork():
        return
    parent = os.getpid()
    relayed = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    # held until each side has its handlers: none is lost, none raises in the parent before its relay is set
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, relayed)
    reports = report = journal = -1
    try:
        reports, report = os.pipe()  # the child -> the parent: the number of each signal the child received
        # the child -> the parent: the temporary paths it makes (deploytool.scratch), an unnamed file
        journal = _journal_fd()
        pid = os.fork()
    except OSError:  # no process (or file) left to make: run here
        for fd in (reports, report, journal):
            if fd >= 0:
                os.close(fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return
    if pid == 0:
        os.close(reports)
        from deploytool.scratch import keep_journal

        keep_journal(journal)
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:  # the parent is already gone
            os._exit(1)

        import threading

        from deploytool.scratch import remove_left

        # bound here: the module globals are gone (None) by the time the last exit-time clean-up runs
        main_thread, sys_, exit_now, remove_folders = threading.main_thread, sys, os._exit, remove_left

        def stop(signum, frame):  # asked to stop: unwind, so that temporary files and folders are removed
            if not main_thread().is_alive() or sys_.is_finalizing():
                # the command is done and the interpreter exits (threading's shutdown has stopped the main thread,
                # then atexit callbacks, finalizers): an exception raised here would only print 'Exception ignored
                # in atexit callback' and its traceback, and the exit would go on with the command's code. The exit
                # ends here, so what it had left to run (weakref finalizers of temporary folders) never runs:
                # deploytool's own temporary folders are removed first
                try:
                    remove_folders()
                except Exception:  # nothing of a clean-up stops the exit
                    pass
                for stream in (sys_.stdout, sys_.stderr):
                    try:
                        stream.flush()
                    except Exception:  # closed, or the reader left
                        pass
                exit_now(128 + signum)
            if signum == signal.SIGINT:
                signal.default_int_handler(signum, frame)
            raise SystemExit(128 + signum)

        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(s) != signal.SIG_IGN:  # ignored from the start (nohup, `cmd &` in a script): kept so
                signal.signal(s, stop)
        # Python's C-level handler writes each signal's number here as it arrives, before any Python code runs
        os.set_blocking(report, False)
        signal.set_wakeup_fd(report, warn_on_full_buffer=False)

        def unreport() -> None:  # a process forked from the command (a gate's copy, a data loader): its own signals
            try:
                old = signal.set_wakeup_fd(-1)
                if old not in (report, -1):  # not ours: put back
                    signal.set_wakeup_fd(old)
                os.close(report)
            except (OSError, ValueError):
                pass

        os.register_at_fork(after_in_child=unreport)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return
    os.close(report)
    relay = _Relay(pid, reports)
    for s in relayed:
        signal.signal(s, relay)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    try:
        _, status = os.waitpid(pid, 0)  # retried by Python itself when a forwarded signal interrupts it
    except ChildProcessError:
        os._exit(1)
    try:  # what a killed command left (its hidden files beside an output, its folders in /tmp): nothing otherwise
        from deploytool.scratch import remove_journaled

        remove_journaled(journal)
    except Exception:  # noqa: BLE001 - the command's own ending is what the program reports
        pass
    if os.WIFEXITED(status):
        os._exit(os.WEXITSTATUS(status))
    sig = os.WTERMSIG(status)
    if sig == signal.SIGINT:
        os._exit(130)
    if sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):  # asked to stop, or the reader left
        os._exit(128 + sig)
    name = signal_name(sig)
    kind = SIGNAL_KINDS.get(name)
    what = ("an abort in native code" if name == "SIGABRT" else "a kill (out of memory?)" if name == "SIGKILL"
            else f"a crash ({kind}) in native code" if kind else f"signal {name}")
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "deploytool")
    sys.stderr.write(f"error: deploytool {command} died of {what} ({name}); its output, if any, was not "
                     "written (rerun with --debug to see where)\n")
    sys.stderr.flush()
    os._exit(2)

