"""The one command-line grammar every ``deploytool`` command follows (README: "CLI grammar").

- ``-o/--output PATH`` names the file or folder a command writes; a second artefact has its own
  named option (``--rows``, ``--reorder``, ``--keep-candidates``).
- ``--json`` is always a flag: print machine-readable JSON to stdout (and nothing else there).
- ``--seq-len`` always takes a list: ``--seq-len 8,128`` and ``--seq-len 8 --seq-len 128`` both give
  (8, 128); a command that uses one length refuses several in one line.
- numeric options are typed (``INT``, ``FLOAT``, units such as ``MS``, ``GB``) and every option has help.
- old spellings keep working for one release: :class:`GrammarCommand` rewrites them before parsing
  and prints ONE ``deprecated:`` line on stderr per old spelling used, as it prints a recipe's old key's.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import logging
import math
import os
import re
from typing import Any, Callable, Iterator, Sequence

import click

from deploytool.models import TOKENIZER_FORMS

SEQ_LEN_METAVAR = "N[,N...]"


def warn_deprecated(old: str, new: str) -> None:
    """The one deprecation line, shared by every command and by the recipes' old keys (choices.deprecated), printed
    on stderr as it is while a command runs (:func:`deprecations_on_stderr`)."""
    from deploytool.choices import deprecated

    deprecated(old, new)


class _DeprecationLines(logging.Handler):
    """Each deprecation line once, as it is (no level, no logger name), on the command's stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        if line not in self.seen:
            self.seen.add(line)
            click.echo(line, err=True)


@contextlib.contextmanager
def deprecations_on_stderr(ctx: click.Context) -> Iterator[None]:
    """While a command parses its options and runs, the library's deprecation lines (an old recipe key read by
    ``run``) are printed as the CLI's own are, each once, not through the root logger's format ('WARNING
    deploytool.recipes.schema: deprecated: ...'); logging's configuration is as it was afterwards."""
    from deploytool.choices import DEPRECATION_LOGGER

    lg = logging.getLogger(DEPRECATION_LOGGER)
    handler = ctx.meta.setdefault("deploytool.deprecations", _DeprecationLines())  # one per run: parse and invoke
    if handler in lg.handlers:  # already in place (a nested call)
        yield
        return
    propagate = lg.propagate
    lg.addHandler(handler)
    lg.propagate = False
    try:
        yield
    finally:
        lg.removeHandler(handler)
        lg.propagate = propagate


def _looks_like_json_file(token: str) -> bool:
    return not token.startswith("-") and token.lower().endswith(".json")


def rewrite_old_spellings(args: Sequence[str], renamed: dict[str, str], json_file: bool) -> list[str]:
    """``args`` with every old spelling replaced by the new one (a deprecation line for each kind used).

    ``renamed``: old long option -> new long option (``--out`` -> ``--output``).
    ``json_file``: the command used to take ``--json FILE``; ``--json X.json`` or ``--json=X`` now
    means ``--output X`` (``--json`` followed by anything else is the new flag).
    """
    out: list[str] = []
    warned: set[str] = set()
    old_of: dict[str, str] = {}  # a new long option -> the old spelling given for it
    typed: list[str] = []  # the tokens given as they are

    def warn(old: str, new: str) -> None:
        if old not in warned:
            warned.add(old)
            warn_deprecated(old, new)

    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            out.extend(args[i:])
            break
        name, eq, value = a.partition("=") if a.startswith("--") else (a, "", "")
        if name in renamed:
            warn(name, renamed[name])
            old_of.setdefault(renamed[name], name)
            out.append(renamed[name] + eq + value)
        elif json_file and name == "--json" and eq:
            warn("--json FILE", "-o/--output FILE (--json prints JSON to stdout)")
            old_of.setdefault("--output", "--json FILE")
            out += ["--output", value]
        elif json_file and a == "--json" and i + 1 < len(args) and _looks_like_json_file(args[i + 1]):
            warn("--json FILE", "-o/--output FILE (--json prints JSON to stdout)")
            old_of.setdefault("--output", "--json FILE")
            out += ["--output", args[i + 1]]
            i += 1
        else:
            out.append(a)
            typed.append(a)
        i += 1
    for a in typed:  # one option in its old and its new spelling: refused, as a recipe giving both keys is
        short = a.startswith("-o") and not a.startswith("--")
        name = "--output" if short else a.partition("=")[0]
        if name in old_of:
            raise click.UsageError(f"{old_of[name]}: both {old_of[name]} (the old spelling) and "
                                   f"{'-o' if short else name} given for the same option: keep {'-o' if short else name} only")
    return out


def _flag_values(params: Sequence[click.Parameter]) -> dict[str, str]:
    """``field=True``/``field=False`` as a config message writes it -> the flag that sets it: ``--no-qnn`` (parameter
    ``no_qnn``) sets ``qnn=False``, ``--fp16`` sets ``fp16=True``, ``--verify/--no-verify`` both values."""
    out: dict[str, str] = {}
    for p in params:
        if not (isinstance(p, click.Option) and p.is_flag and p.is_bool_flag and p.name and p.opts):
            continue
        on = next((o for o in p.opts if o.startswith("--")), None)
        off = next((o for o in p.secondary_opts if o.startswith("--")), None)
        if on and off:  # --verify/--no-verify
            out[f"{p.name}=True"], out[f"{p.name}=False"] = on, off
        elif on and p.name.startswith("no_") and on == "--" + p.name.replace("_", "-"):  # --no-qnn -> no_qnn
            out[f"{p.name[3:]}=False"] = on
        elif on:
            out[f"{p.name}=True"] = on
    return out


class GrammarCommand(click.Command):
    """A click command that accepts its old option spellings for one release (see the module doc)."""

    def __init__(self, *args: Any, renamed: dict[str, str] | None = None, json_file: bool = False,
                 folder_through_links: bool = False, **kwargs: Any) -> None:
        self.renamed = dict(renamed or {})
        self.json_file = json_file
        # the output is a folder that the command makes where an -o link points, one not made yet included
        # (bundle, qnn compile: a link to a folder on another volume, made before the first run): such a link
        # is taken, not refused as leading to nothing; a link that loops still is
        self.folder_through_links = folder_through_links
        old = [f"{o} (now {n})" for o, n in self.renamed.items()]
        if json_file:
            old.append("--json FILE (now -o/--output FILE)")
        if old and not kwargs.get("epilog"):
            kwargs["epilog"] = "Deprecated spellings, accepted until the next release: " + ", ".join(old) + "."
        super().__init__(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with deprecations_on_stderr(ctx):
            return self._invoke(ctx)

    def _invoke(self, ctx: click.Context) -> Any:
        from deploytool.errors import ConfigError, OutputPathError, PassRefusedError

        try:
            return super().invoke(ctx)
        # a config field's name -> the option the user typed (calib_size -> --calib-size); a pass's own check of
        # a field against the model too (prune-heads --heads 0:9 on 4 heads: 'heads: layer 0 head id 9 out of range');
        # an output path a config checks (fit's workdir: --keep-candidates)
        except (ConfigError, OutputPathError, PassRefusedError) as e:
            flags = {p.name: p.opts[0] for p in self.params
                     if isinstance(p, click.Option) and p.name and p.opts and p.opts[0].startswith("--")}
            for opt in list(flags.values()):  # a field named as its option where the parameter is not (heads_spec)
                flags.setdefault(opt[2:].replace("-", "_"), opt)
            # a value the environment gave is named by its variable: DEPLOYTOOL_ARM64_HOME under a file was refused
            # as '--emulator-dir: ...', an option the user never typed
            for p in self.params:
                if isinstance(p, click.Option) and p.name in flags and isinstance(p.envvar, str) \
                        and ctx.get_parameter_source(p.name) is click.core.ParameterSource.ENVIRONMENT:
                    for name in [n for n, opt in flags.items() if opt == flags[p.name]]:
                        flags[name] = f"${p.envvar}"
            msg = str(e)
            field = msg.split(":", 1)[0]
            if field not in flags and field.endswith("s") and field[:-1] in flags:  # seq_lens <- --seq-len N[,N...]
                flags[field] = flags[field[:-1]]
            parts = field.split("/")  # fields that exclude each other: heads/ratio -> --heads/--ratio
            if field not in flags and len(parts) > 1 and all(p in flags for p in parts):
                flags[field] = "/".join(flags[p] for p in parts)
            # a message that leads with the user's own path is left alone ('-o output' -> 'output: is a directory')
            given = {os.fspath(v) for p in self.params if isinstance(p.type, click.Path)
                     for v in ((ctx.params.get(p.name) or ()) if p.multiple else (ctx.params.get(p.name),))
                     if isinstance(v, (str, os.PathLike))}
            text = msg
            if field in flags and ":" in msg and field not in given:
                text = f"{flags[field]}{msg[len(field):]}"
            # a field the sentence names (bundle: 'and no qnn_calibration is given' <- --qnn-calib-data)
            for name in getattr(e, "mentions", ()):
                if name in flags:
                    text = re.sub(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", flags[name], text)
            # a boolean field's value set by a flag -> the flag (bundle: 'which qnn=False turns off' <- --no-qnn)
            for value, opt in _flag_values(self.params).items():
                text = re.sub(rf"(?<![\w.-]){re.escape(value)}(?![\w.-])", opt, text)
            if text != msg:
                new = type(e)(text)
                new.exit_code = e.exit_code
                raise new from e
            raise

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with deprecations_on_stderr(ctx):
            return self._parse_args(ctx, args)

    def _parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            rest = super().parse_args(ctx, rewrite_old_spellings(args, self.renamed, self.json_file))
        except click.UsageError as e:  # click's parser raises "Option '--width' requires an argument." without
            # the command's context, so the error line sent the user to 'deploytool --help'
            if e.ctx is None:
                e.ctx = ctx
            raise
        output = ctx.params.get("output")
        if output is not None and os.fspath(output) == "-":
            # '-' names stdout by the usual convention; no command writes its -o there (a file or folder named '-'
            # was made, after all the work): refused before any, saying where its output can go instead
            from deploytool.cli._parse import refuse_stdout_dash

            optional = not next(p.required for p in self.params if p.name == "output")
            json_flag = next((p.opts[0] for p in self.params if isinstance(p, click.Option) and p.is_flag
                              and "--json" in p.opts), None)
            refuse_stdout_dash(output, ctx.command_path.split(" ", 1)[-1], "to a file or folder, not to stdout",
                               f"for JSON on stdout leave -o out and use {json_flag}" if json_flag and optional
                               else "give a path")
        if output is not None and os.fspath(output):
            # a link that loops or leads to nothing was replaced by the output after all the work: refused before any
            from deploytool.cli._parse import refuse_link_to_nothing

            refuse_link_to_nothing(output, dangling_ok=self.folder_through_links)
        if output:  # for the group's error line (a full disk names what was being written)
            ctx.meta["deploytool.output"] = str(output)
        return rest


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses nan and inf (nan compares false to every bound, so the range
    alone lets it through)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{rv} is not a finite number.", param, ctx)
        return rv


class Choice(click.Choice):
    """The type of every option that takes one name of a closed set (``--runtime``, ``--rounding``, ``--task``):
    any case and surrounding spaces, given to the command in its own spelling (``deploytool.choices.match_name``,
    the rule every config's enum and schema choice follows); anything else is the config's one-line error
    ``--opt: expected one of a, b, got 'x' (did you mean 'a'?)``.

    ``source``: the names, or ``"module:attribute"`` naming an enum or a tuple of names or members the library
    declares, imported at first use (the CLI's import stays light, and the names are written once)."""

    def __init__(self, source: Sequence[str] | str) -> None:
        self._source = source
        self._names: tuple[str, ...] | None = None if isinstance(source, str) else tuple(source)
        self.case_sensitive = False

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        if self._names is None:
            module, _, attr = str(self._source).partition(":")
            found = getattr(importlib.import_module(module), attr)
            self._names = tuple(str(m.value) if isinstance(m, enum.Enum) else str(m) for m in found)
        return self._names

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:
        self._names = tuple(value)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from deploytool.choices import match_name, not_one_of
        from deploytool.errors import ConfigError

        if isinstance(value, enum.Enum):
            value = value.value
        name = match_name(value, self.choices)
        if name is None:
            opt = max(param.opts, key=len) if param is not None and param.opts else "value"
            raise ConfigError(f"{opt}: {not_one_of(self.choices, value)}")
        return name


class SeqLens(click.ParamType):
    """One ``--seq-len`` value: ``8`` or ``8,128`` -> a tuple of ints (range checks stay in the configs)."""

    name = "seq_lens"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return SEQ_LEN_METAVAR

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, int):
            return (value,)
        if isinstance(value, (tuple, list)):
            return tuple(v for item in value for v in self.convert(item, param, ctx))
        parts = [p.strip() for p in str(value).split(",")]
        if not parts or any(not p for p in parts):
            self.fail(f"expected comma-separated integers like 8,128, got {value!r}", param, ctx)
        out = []
        for p in parts:
            try:
                out.append(int(p))
            except ValueError:
                self.fail(f"{p!r} is not an integer (expected e.g. 8,128)", param, ctx)
        return tuple(out)


def _flatten(values: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    out: list[int] = []
    for group in values:
        for v in group:
            if v not in out:
                out.append(v)
    return tuple(out)


def seq_len_option(*, default: Sequence[int] | int | None, help: str, single: bool = False,
                   show_default: bool = True) -> Callable:
    """``--seq-len`` as every command takes it: repeatable, each value a comma-separated list.

    The command receives a tuple of ints (duplicates dropped, order kept), or with ``single=True``
    one int (or None when nothing was given and the default is None); several lengths are then refused.
    """

    def callback(ctx: click.Context, param: click.Parameter, value: Sequence[tuple[int, ...]]):
        lens = _flatten(value or ())
        if not single:
            return lens or None
        if len(lens) > 1:
            raise click.BadParameter(
                f"this command uses one sequence length, got {','.join(map(str, lens))}", ctx=ctx, param=param)
        return lens[0] if lens else None

    # the default as it is typed ('8,128'), which SeqLens converts: click shows a string show_default in
    # parentheses ('[default: (8,128)]'), a list default as its items
    dflt: Any = () if default is None else \
        (str(default) if isinstance(default, int) else ",".join(map(str, default)),)
    shown = bool(show_default and default is not None)
    return click.option("--seq-len", "seq_len", type=SeqLens(), multiple=True, default=dflt, show_default=shown,
                        metavar=SEQ_LEN_METAVAR, callback=callback,
                        help=help + (" One length." if single else
                                     " A list: 8,128 or --seq-len 8 --seq-len 128 (they add up)."))


def json_flag(help: str = "Print machine-readable JSON to stdout instead of the text output.") -> Callable:
    """``--json``: always a flag, always JSON on stdout."""
    return click.option("--json", "as_json", is_flag=True, help=help)


#: ``--tokenizer``'s help in every command that takes it (quantize --static, qnn, bundle): one lookup rule,
#: :func:`deploytool.models.find_tokenizer`, in one set of words
TOKENIZER_HELP = (f"The model's tokenizer: {TOKENIZER_FORMS} [default: the one beside the .onnx, else the one in the "
                  "model folder its export read].")


def tokenizer_option() -> Callable:
    """``--tokenizer``: a file or a folder (:data:`TOKENIZER_HELP`); the library checks what it holds."""
    return click.option("--tokenizer", default=None, type=click.Path(), help=TOKENIZER_HELP)
