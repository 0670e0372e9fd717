"""The one parser of a closed set (an enum) from user input, for every typed config, and of a comma-separated list
(:func:`items`).

Every config field that takes one of a few names goes through :func:`parse_enum` (the pydantic schemas
through :func:`match_enum` and :func:`not_one_of`), so each says the same thing the same way:
``field: expected one of a, b, got 'x' (did you mean 'a'?)``.
"""

from __future__ import annotations

import difflib
import enum
import math
import numbers
import reprlib
from pathlib import Path
from typing import Any, Iterable, Sequence, TypeVar

from deploytool.errors import ConfigError

E = TypeVar("E", bound=enum.Enum)

__all__ = ["DEPRECATION_LOGGER", "deprecated", "did_you_mean", "enum_choices", "match_enum", "match_name", "not_one_of",
           "parse_enum", "require_callback", "require_config"]


def name_key(value: str) -> str:
    """How a name of a closed set is compared, for every choice (an enum's value or name, a schema's
    :func:`~deploytool.validation.Choice`, a CLI option's): case and surrounding spaces ignored. Names that are
    case-sensitive by nature (files, columns, labels, hosts) are not choices and never come here."""
    return value.strip().lower()


def match_name(value: Any, names: Iterable[str]) -> str | None:
    """The one of ``names`` that ``value`` spells (see :func:`name_key`), in its own spelling; ``None`` when none
    does (or ``value`` is not a string)."""
    if not isinstance(value, str):
        return None
    key = name_key(value)
    return next((n for n in names if name_key(n) == key), None)


def did_you_mean(value: str, allowed: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``allowed`` (difflib's, else the one name that begins with
    ``value``: 'x86' -> 'x86-host'), or ``""``."""
    near = difflib.get_close_matches(value, list(allowed), n=1)
    if not near and isinstance(value, str) and len(value.strip()) >= 2:
        near = [a for a in allowed if a.lower().startswith(value.strip().lower())]
        near = near if len(near) == 1 else []
    return f" (did you mean '{near[0]}'?)" if near else ""


def enum_choices(cls: type[E], *, by_name: bool = False, allowed: Iterable[E] | None = None) -> list[str]:
    """The spellings a message offers: the members' values, or their names with ``by_name``."""
    return [m.name if by_name else str(m.value) for m in (cls if allowed is None else allowed)]


def match_enum(cls: type[E], value: Any, *, by_name: bool = False, allowed: Iterable[E] | None = None) -> E | None:
    """The member of ``cls`` that ``value`` is or spells (its value, or with ``by_name`` also its name, in any
    case and with surrounding spaces), restricted to ``allowed`` when given; ``None`` when none is."""
    members = list(cls if allowed is None else allowed)
    if isinstance(value, cls):
        return value if value in members else None
    if isinstance(value, str):
        for m in members:
            if match_name(value, [str(m.value)] + ([m.name] if by_name else [])) is not None:
                return m
        return None
    for m in members:  # a non-string value (a number) only as itself
        if not isinstance(value, bool) and m.value == value:
            return m
    return None


def not_one_of(choices: Sequence[str], value: Any) -> str:
    """``expected one of a, b, got 'x' (did you mean 'a'?)``; the hint ignores case and spaces, and a member
    of an enum is shown by its value."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (dict, list, tuple, set, frozenset)):  # named by its kind: its repr may be huge
        return f"expected one of {', '.join(choices)}, got {'mapping' if isinstance(value, dict) else 'list'}"
    hint = ""
    if isinstance(value, str):
        value = value[:160]  # a hint for a long string is no hint, and matching it all would take long
        lowered = {c.lower(): c for c in choices}
        near = difflib.get_close_matches(value.strip().lower(), list(lowered), n=1)
        hint = f" (did you mean '{lowered[near[0]]}'?)" if near else ""
    return f"expected one of {', '.join(choices)}, got {show(value)}{hint}"


def parse_enum(cls: type[E], value: Any, field: str, *, by_name: bool = False,
               allowed: Iterable[E] | None = None) -> E:
    """``value`` as a member of ``cls`` (see :func:`match_enum`); otherwise ConfigError
    ``field: expected one of a, b, got 'x' (did you mean 'a'?)`` listing the values (the names with
    ``by_name``) of ``allowed`` or of every member."""
    allowed = None if allowed is None else list(allowed)
    m = match_enum(cls, value, by_name=by_name, allowed=allowed)
    if m is None:
        raise ConfigError(f"{field}: {not_one_of(enum_choices(cls, by_name=by_name, allowed=allowed), value)}")
    return m


#: the logger of every deprecation line (an old CLI option, an old recipe key): a program's logging set-up shows or
#: silences them apart from the rest (without one, Python's last-resort handler prints the bare line on stderr); the
#: CLI prints each once, bare, on stderr (cli._grammar.GrammarCommand)
DEPRECATION_LOGGER = "deploytool.deprecated"


def deprecated(old: str, new: str, where: str = "") -> str:
    """Say, once, that ``old`` still works for one release and is now ``new`` (``where``: the file it is in), in the
    one wording every old spelling has: ``deprecated: [where: ]old is now new; the old spelling goes in the next
    release``. Logged as a WARNING on :data:`DEPRECATION_LOGGER`; returns the line."""
    import logging

    line = f"deprecated: {f'{where}: ' if where else ''}{old} is now {new}; the old spelling goes in the next release"
    logging.getLogger(DEPRECATION_LOGGER).warning("%s", line)
    return line


def show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (``'abc...``), for messages that echo a bad value.

    Bounded in time and memory too: a container is summarised by :mod:`reprlib` (a few items, a few levels),
    never fully expanded (a YAML alias bomb's repr is hundreds of MB), and an int too long for ``repr`` is
    described by its size."""
    if isinstance(value, str):
        s = repr(value[: 2 * limit])  # the same first characters as the whole repr, and as long when cut
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 8 * limit:
        return f"<about {int(value.bit_length() * math.log10(2)) + 1} digits>"
    else:
        r = reprlib.Repr()
        r.maxlevel, r.maxstring, r.maxother, r.maxlong = 3, limit, limit, limit
        r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 8
        try:
            s = r.repr(value)
        except Exception:  # noqa: BLE001 - a value whose repr fails is still named
            s = f"<{type(value).__name__}>"
        if not s.isprintable():  # a multi-line repr (an onnx_ir Model's) in a one-line message: its lines joined
            s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def type_label(value: Any) -> str:
    """``value``'s type as a message names it: ``str`` for a builtin, else its package and class
    (``onnx_ir.Model``, ``onnx.ModelProto``)."""
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__.split('.')[0]}.{t.__name__}"


def as_path(value: Any, name: str, what: str = "a file path") -> Path:
    """``value`` as a Path (str or os.PathLike; bytes decoded as the file system does); ConfigError naming ``name``
    for anything else (None, a number, an empty string) instead of a TypeError from deep inside."""
    import os

    if isinstance(value, bytes):
        value = os.fsdecode(value)
    if not isinstance(value, (str, os.PathLike)) or not str(os.fspath(value)):
        if hasattr(value, "graph") and (hasattr(value, "opset_import") or hasattr(value, "opset_imports")):
            # onnx.ModelProto, onnx_ir.Model: the library reads and writes files (its repr is many lines)
            raise ConfigError(f"{name}: expected {what}, got an in-memory model ({type_label(value)})")
        raise ConfigError(f"{name}: expected {what}, got {show(value)}")
    return Path(value)


def one_or_many(value: Any) -> Any:
    """A list field's value with one string (or path) read as a list of that one item: iterating the string gave its
    letters (``ssh_options="Port=2222"`` was ``'P', 'o', ...``). Anything else is returned as it is, for the
    field's own check."""
    import os

    return (value,) if isinstance(value, (str, bytes, os.PathLike)) else value


def first_repeat(items: Iterable[Any], key=lambda x: x) -> tuple[int, Any, Any] | None:
    """(index, item, the earlier item with the same ``key``) of the first item given twice, or None: a config list
    that names a file, a profile or a sweep value once each."""
    seen: dict[Any, Any] = {}
    for i, x in enumerate(items):
        k = key(x)
        if k in seen:
            return i, x, seen[k]
        seen[k] = x
    return None


def same_file(path: Any) -> Any:
    """A key under which two names of one file are equal: its (device, inode) when it exists (a hard link too, which
    ``Path.resolve`` leaves apart), else its resolved path."""
    try:
        p = Path(path).resolve()  # first: 'sub/../m.onnx' with no folder sub is m.onnx, though stat() fails on it
    except (OSError, RuntimeError):  # a loop of links (Python < 3.13: RuntimeError): its reader names it
        return Path(path).absolute()
    try:
        st = p.stat()
    except OSError:
        return p
    return (st.st_dev, st.st_ino)


def refuse_repeats(items: Iterable[Any], what: str, key=lambda x: x) -> None:
    """ConfigError ``what: x given twice (as y)`` for the first item given twice (see :func:`first_repeat`)."""
    rep = first_repeat(items, key)
    if rep is not None:
        _, x, earlier = rep
        raise ConfigError(f"{what}: {x} given twice" + (f" (as {earlier})" if str(earlier) != str(x) else ""))


# ------------------------------------------------------------------------------ configs are values

class FrozenMap(dict):
    """A mapping a config holds (``{layer: (head ids)}``): read like a dict (``==``, ``json.dumps``, ``repr``
    ``{0: (0, 1)}``), but immutable and hashable, so the config holding it is a value too."""

    __slots__ = ()

    def _refuse(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} is immutable (a config's mapping): build a new config instead")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __repr__(self) -> str:
        return dict.__repr__(self)

    def __reduce__(self):  # pickle and deepcopy rebuild it whole (never item by item through __setitem__)
        return (type(self), (dict(self),))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


def a_type(name: str) -> str:
    """``name`` with its article, as a message reads it: ``an ExportConfig``, ``an FFNPruneConfig``, ``a QnnTarget``.
    A, E, I, O take ``an`` (U mostly sounds a consonant: a UnitSpec), and so does an initialism whose letter is
    said with a vowel (F, H, L, M, N, R, S, X)."""
    initialism = len(name) > 1 and name[0].isupper() and (name[1].isupper() or name[1].isdigit())
    vowel = name[:1].lower() in tuple("aeio") or (initialism and name[0] in "FHLMNRSX")
    return f"{'an' if vowel else 'a'} {name}"


def kind_of(value: Any) -> str:
    """How a message names a wrong value: ``str 'many'``, ``list``, ``nothing``."""
    if value is None:
        return "nothing"
    if isinstance(value, (dict, list, tuple)):
        return "mapping" if isinstance(value, dict) else "list"
    return f"{type(value).__name__} {show(value, 60)}"


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an int too large for a float
        return False


def _type_problem(value: Any, tp: Any) -> str | None:
    """Why ``value`` is not of the annotated type ``tp`` (as a config takes it before its ``__post_init__``
    normalises it), or None when it is (or when ``tp`` is not one checked here)."""
    import dataclasses
    import os
    import types
    import typing

    origin = typing.get_origin(tp)
    if tp is Any or isinstance(tp, (str, typing.TypeVar)):
        return None
    if origin is typing.Annotated:
        return _type_problem(value, typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        problems = [_type_problem(value, a) for a in args if a is not type(None)]
        return None if any(p is None for p in problems) else problems[0]
    if tp is type(None):
        return None if value is None else f"expected nothing, got {kind_of(value)}"
    if tp is bool:
        return None if isinstance(value, bool) else f"expected true or false, got {kind_of(value)}"
    if tp is int:  # numbers.Integral: numpy's integers too (its __post_init__ may still want a Python int)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return f"expected an integer, got {kind_of(value)}"
        return None
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"expected a number, got {kind_of(value)}"
        return None if _finite(value) else f"expected a finite number, got {show(value)}"
    if tp is str:  # a name or a file: a path object names a file as well as a string does
        return None if isinstance(value, (str, os.PathLike)) else f"expected a string, got {kind_of(value)}"
    if tp is Path:
        if isinstance(value, os.PathLike) or (isinstance(value, str) and value.strip()):
            return None
        return f"expected a file path, got {kind_of(value)}"
    if origin in (tuple, list, frozenset, set) or tp in (tuple, list):
        if isinstance(value, (str, os.PathLike)):  # one item, or a list spelt as text: its __post_init__ reads it
            return None
        if not isinstance(value, (list, tuple, set, frozenset)):
            return f"expected a list, got {kind_of(value)}"
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if len(args) == 1:
            for i, x in enumerate(value):
                p = _type_problem(x, args[0])
                if p is not None:
                    return f"item {i}: {p}"
        return None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return None  # a member or its spelling: parse_enum in its __post_init__ names the choices
    if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or origin is None):
        return None if isinstance(value, tp) else f"expected {a_type(tp.__name__)}, got {kind_of(value)}"
    return None


def _python_number(value: Any, tp: Any) -> Any:
    """A numpy number (``np.int64(8)``, ``np.float32(0.5)``) the annotation ``tp`` takes, as the Python int or float
    it stands for, so that the class's ``__post_init__`` (``isinstance(v, int)``), equality and JSON see the same
    number; anything else as it is."""
    if isinstance(value, bool) or type(value) in (int, float) or not isinstance(value, numbers.Real):
        return value
    allowed = _union_args(tp)
    if isinstance(value, numbers.Integral) and int in allowed:
        return int(value)
    return float(value) if float in allowed else value


def _python_numbers(value: Any, tp: Any) -> Any:
    """:func:`_python_number` of ``value``, or of each item of a list or tuple whose annotation is a list of
    numbers (``seq_lens: tuple[int, ...]``, kept a tuple or a list as given)."""
    import typing

    for t in _union_args(tp):
        if typing.get_origin(t) in (tuple, list) and isinstance(value, (tuple, list)):
            args = [a for a in typing.get_args(t) if a is not Ellipsis]
            if len(args) == 1:
                return type(value)(_python_number(x, args[0]) for x in value)
    return _python_number(value, tp)


def is_array(value: Any) -> bool:
    """Whether ``value`` is a numpy array (numpy not imported here: an array exists only once it is)."""
    import sys

    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.ndarray)


def array_numbers(value: Any, *, integers: bool) -> tuple:
    """A 1-D numpy array given where a list of numbers goes (``seq_lens=np.array([8, 128])``,
    ``widths=np.linspace(0.25, 1, 4)``) as the tuple of Python numbers it holds, as its numpy numbers one by one
    are taken; ValueError saying why for any other array: not 1-D, of bools or text, or of floats where the items
    are integers (as ``np.float64(8.0)`` is refused there). Ranges stay with the field's own check."""
    what = "integers" if integers else "numbers"
    if value.ndim != 1:
        raise ValueError(f"expected a list of {what} (a 1-D array), got a {value.ndim}-D array of shape "
                         f"{tuple(value.shape)}")
    kind = value.dtype.kind
    if kind in "iu" or (kind == "f" and not integers):
        return tuple(value.tolist())
    raise ValueError(f"expected a list of {what}, got an array of {value.dtype} {show(value.tolist(), 60)}")


def _array_items(value: Any, tp: Any, name: str) -> Any:
    """``value``, or when it is a numpy array and ``tp`` a list of numbers (``tuple[int, ...]``), the tuple (or list)
    of Python numbers :func:`array_numbers` reads from it (ConfigError naming ``name`` for an array that is none)."""
    import typing

    if not is_array(value):
        return value
    for t in _union_args(tp):
        origin = typing.get_origin(t)
        args = [a for a in typing.get_args(t) if a is not Ellipsis]
        if origin not in (tuple, list) or len(args) != 1:
            continue
        item = set(_union_args(args[0]))
        if item and item <= {int, float}:
            try:
                got = array_numbers(value, integers=float not in item)
            except ValueError as e:
                raise ConfigError(f"{name}: {e}") from None
            return got if origin is tuple else list(got)
    return value


def _union_args(tp: Any) -> tuple:
    """The types ``tp`` allows: its members when a union, else ``(tp,)``."""
    import types
    import typing

    return typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)


#: ``dataclasses.field(metadata=OWN_CHECK)``: a field ``@config`` does not type-check, as its ``__post_init__`` takes
#: more than its annotation says (a profile's name for a Profile, one number for a list of them) and refuses the
#: rest in its own words (ConfigError naming the field)
OWN_CHECK = {"deploytool.config.own_check": True}


def expects(what: str) -> dict:
    """``dataclasses.field(metadata=expects("a model name (minilm) or a Hugging Face folder"))``: the words
    ``@config``'s type check uses for what the field takes (``model: expected a model name ..., got nothing``),
    where the annotation's ``a string`` would not tell the user what to give."""
    return {"deploytool.config.expects": what}


def config(cls: type) -> type:
    """``@config`` over ``@dataclasses.dataclass(frozen=True)``: the plain-dataclass configs refuse what the
    pydantic ones (``validation.schema``) refuse, with the same error, before their ``__post_init__`` runs:

    * an unknown keyword: ConfigError ``name: unknown key (did you mean 'x'?)``, not Python's TypeError;
    * a missing required field, too many positional values, a field given twice: ConfigError naming it;
    * a value of the wrong type for its annotation: ConfigError ``name: expected an integer, got str '4'``
      (a ``Path`` field takes a string too and holds it as a Path, so equal configs compare equal), except
      in a field whose metadata is :data:`OWN_CHECK`; a field with :func:`expects` metadata says what it takes
      in those words;
    * a numpy number or array is the Python number or tuple of numbers it stands for (``np.int64(8)``,
      ``seq_lens=np.array([8, 128])``, in any field that is a list of numbers: :func:`array_numbers`).

    Ranges and rules across fields stay in the class's ``__post_init__`` (ConfigError naming the field)."""
    import dataclasses
    import functools
    import os
    import typing

    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:
        raise TypeError(f"@config goes over @dataclasses.dataclass(frozen=True), not on {cls.__name__}")
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):  # noqa: N807
        fields = [f for f in dataclasses.fields(type(self)) if f.init]
        names = [f.name for f in fields]
        for key in kwargs:
            if key not in names:
                hint = did_you_mean(str(key), names) or f" (allowed: {', '.join(names)})"
                raise ConfigError(f"{key}: unknown key{hint}")
        if len(args) > len(names):
            raise ConfigError(f"{type(self).__name__}: takes at most {len(names)} positional values, got {len(args)}")
        values = dict(zip(names, args))
        for key in kwargs:
            if key in values:
                raise ConfigError(f"{key}: given twice (by position and by name)")
        values.update(kwargs)
        for f in fields:
            if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{f.name}: required key is missing")
        hints = typing.get_type_hints(type(self))
        own = {f.name for f in fields if f.metadata.get("deploytool.config.own_check")}
        wants = {f.name: f.metadata["deploytool.config.expects"] for f in fields
                 if "deploytool.config.expects" in f.metadata}
        for name, value in values.items():
            tp = hints.get(name, Any)
            # an array for a list of numbers (seq_lens=np.array([8, 128])), as a numpy number for a number
            value = values[name] = _array_items(value, tp, name)
            if name in own:
                continue
            problem = _type_problem(value, tp)
            if problem is not None:
                raise ConfigError(f"{name}: expected {wants[name]}, got {kind_of(value)}" if name in wants
                                  else f"{name}: {problem}")
            if isinstance(value, (str, os.PathLike)) and Path in _union_args(tp):
                values[name] = Path(value)
            else:
                values[name] = _python_numbers(value, tp)
        init(self, **values)

    cls.__init__ = __init__
    return cls


def items(text: str, option: str) -> tuple[str, ...]:
    """``"fp32, int8"`` -> ("fp32", "int8"): a comma-separated list, each item stripped. An empty item
    (``1,,0.5``, a trailing comma, a blank value) is refused, naming the option and the item, as ``--seq-len``
    refuses one: dropping it in silence ran a different grid from the one typed."""
    parts = [p.strip() for p in str(text).split(",")]
    for i, p in enumerate(parts, 1):
        if not p:
            raise ConfigError(f"{option}: item {i} of {text!r} is empty (expected a comma-separated list "
                              f"with no empty items)")
    return tuple(parts)


def require_config(config, cls: type, fn: str) -> None:
    """ConfigError unless ``config`` is a ``cls``: every library entry point that takes a config checks it so
    (``pack_file`` given a SliceConfig ran the slice; a slice given a PackConfig failed inside the pass with
    AttributeError; ``fit(Path(...))`` an AttributeError)."""
    from deploytool.errors import ConfigError

    if not isinstance(config, cls):  # "an ExportConfig", not "a ExportConfig"
        raise ConfigError(f"{fn}: config must be {a_type(cls.__name__)}, got {type(config).__name__}")


def require_callback(value, name: str, what: str) -> None:
    """ConfigError unless ``value`` is None or callable: a progress callback given a string or a number failed with
    ``TypeError: 'str' object is not callable`` at its first call, after the work had begun."""
    from deploytool.errors import ConfigError

    if value is not None and not callable(value):
        raise ConfigError(f"{name}: expected a function {what} (or None), got {kind_of(value)}")
