"""The one validation mechanism for recipes, device profiles and pass configs: pydantic v2.

Why pydantic and not msgspec: ``benchmarks/results/validation_choice.json`` (pydantic's errors are
data: key path, error type, the bad input and the bound, so one formatter writes every message;
msgspec's are English text, drop the key inside a mapping and the bad value; pydantic costs more
import time, paid only where a document or config is validated).

A schema is a frozen pydantic dataclass (:func:`schema`): ``dataclasses.fields``/``asdict``/``replace``
keep working, and constructing one validates it. :func:`validate` turns a parsed YAML document into
one, and any failure into one :class:`~deploytool.errors.ConfigError` line::

    recipes/quickstart.yaml: sweep.width[2]: expected a number in (0, 1], got 1.5
    recipes/quickstart.yaml: bench.seq_len: unknown key (did you mean 'seq_lens'?)

The field types below (:func:`Integer`, :data:`Fraction`, :func:`Number`, :data:`Text`, :data:`ColumnName`,
:func:`Choice`, :func:`OneOf`) carry deploytool's own wording; a validator that needs a rule of its own raises
:func:`invalid`. The mechanism's only module-level state is constants: the configuration and two limits
(:data:`MAX_YAML_NODES`, the length of a message).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import re
import typing
from typing import Annotated, Any, Mapping, Sequence

from pydantic import ConfigDict, PlainValidator, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass
from pydantic_core import PydanticCustomError

from deploytool.choices import did_you_mean, enum_choices, kind_of, match_enum, match_name, not_one_of, show
from deploytool.errors import ConfigError

__all__ = ["Choice", "ColumnName", "FilePath", "Flag", "Fraction", "Integer", "Number", "OneOf", "Text",
           "check_calibration_columns", "check_column_name", "check_pair_column", "format_error", "invalid", "kind_of",
           "safe_load_yaml", "schema", "show", "validate", "without_extensions"]

# unknown keys are errors; types are checked by the field types below (lax elsewhere: a YAML list fills
# a tuple, a mapping fills a nested schema)
CONFIG = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


def schema(cls=None, /, **kwargs):
    """``@schema``: a frozen pydantic dataclass validated on construction (see the module doc).

    Constructing one in Python (``SliceConfig(width=1.5)``, ``dataclasses.replace``) raises
    :class:`~deploytool.errors.ConfigError` ``key.path: problem`` (never pydantic's multi-line error);
    a ``__post_init__`` may check what spans fields and raise ConfigError itself."""
    def wrap(c):
        out = _pydantic_dataclass(c, frozen=kwargs.get("frozen", True), config=CONFIG)
        init = out.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kw):  # noqa: N807
            try:
                init(self, *args, **kw)
            except ValidationError as e:
                raise ConfigError(format_error(e, "", out)) from None

        out.__init__ = __init__
        return out

    return wrap if cls is None else wrap(cls)


def invalid(message: str, at: str = "") -> PydanticCustomError:
    """An error with deploytool's own ``message``, at the key path of the value being validated plus
    ``at`` (``"[2]"``, ``".name"``). Raise it from a validator."""
    return PydanticCustomError("deploytool", "{message}", {"message": message, "at": at})


def _cut(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (a key or value echoed in a message)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------ field types

def _is_number(v: Any) -> bool:
    """An int or a finite float (not a bool), numpy's too (``np.float32(0.5)``, ``np.int64(8)``: a value read from
    an array is the same number): NaN and infinity are no measure of anything, and ``inf`` would reach JSON
    output as the non-standard ``Infinity``."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int too large for a float
        return False


def Integer(lo: int | None = None, hi: int | None = None, what: str = "") -> Any:  # noqa: N802 - a type
    """An int (not a bool, not a string; numpy's integers too, held as Python ints) in ``[lo, hi]``."""
    rng = (f" in [{lo}, {hi}]" if lo is not None and hi is not None else f" >= {lo}" if lo is not None
           else f" <= {hi}" if hi is not None else "")
    label = f"an integer{rng}{f' ({what})' if what else ''}"

    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise invalid(f"expected {label}, got {kind_of(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise invalid(f"expected {label}, got {show(v)}")
        return int(v)

    return Annotated[int, PlainValidator(check)]


def _fraction(v: Any) -> float:
    if not _is_number(v):
        raise invalid(f"expected a number in (0, 1], got {kind_of(v)}")
    if not 0 < v <= 1:
        raise invalid(f"expected a number in (0, 1], got {show(v)}")
    return float(v)


#: a number in (0, 1] (a width, a depth)
Fraction = Annotated[float, PlainValidator(_fraction)]


def Number(unit: str = "", *, positive: bool = True, allow_zero: bool = False) -> Any:  # noqa: N802 - a type
    """A float or int (not a bool, not NaN, not infinite); ``positive``: > 0, or >= 0 with ``allow_zero``."""
    u = f" ({unit})" if unit else ""

    def check(v: Any) -> float:
        if not _is_number(v):
            raise invalid(f"expected a number{u}, got {kind_of(v)}")
        if positive and (v < 0 or (v == 0 and not allow_zero)):
            raise invalid(f"expected a {'non-negative' if allow_zero else 'positive'} number{u}, got {show(v)}")
        return float(v)

    return Annotated[float, PlainValidator(check)]


def _flag(v: Any) -> bool:
    if not isinstance(v, bool):
        raise invalid(f"expected true or false, got {kind_of(v)}")
    return v


#: true or false (not 1, not "yes")
Flag = Annotated[bool, PlainValidator(_flag)]


def _file_path(v: Any) -> Any:
    if isinstance(v, os.PathLike) or (isinstance(v, str) and v.strip()):
        return v
    raise invalid(f"expected a file path, got {kind_of(v)}")


#: a file name (a string or an ``os.PathLike``), kept as given
FilePath = Annotated[Any, PlainValidator(_file_path)]


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise invalid(f"expected a non-empty string, got {kind_of(v)}")
    return v


#: a non-empty string
Text = Annotated[str, PlainValidator(_text)]


def _column_problem(v: Any) -> str | None:
    """Why ``v`` is not the name of a data file's column (a string, not blank), or None when it is one."""
    return None if isinstance(v, str) and v.strip() else f"expected a column name, got {kind_of(v)}"


def _column_name(v: Any) -> str:
    problem = _column_problem(v)
    if problem is not None:
        raise invalid(problem)
    return v


#: the name of a data file's column (a string, not blank); :func:`check_calibration_columns` in the plain-dataclass
#: configs says the same words
ColumnName = Annotated[str, PlainValidator(_column_name)]

#: the text column a calibration file is read from when none is named (``deploytool.data``'s default)
DEFAULT_TEXT_COL = "text"


def check_calibration_columns(text_col: Any, pair_col: Any, *, names: tuple[str, str], data: Any, data_name: str,
                              text_default: str | None = DEFAULT_TEXT_COL) -> None:
    """The one rule for a calibration file's columns, in the words of every config that names them
    (``QnnQuantConfig``, ``BundleConfig``, ``Int8Config``); ConfigError ``field: problem``, ``names`` being the
    config's (text, second text) fields and ``data_name`` its calibration data field:

    * each column a :data:`ColumnName` (the text column may be None only where that is its default: the
      default column, :data:`DEFAULT_TEXT_COL`); the second text's None: one text a row;
    * a column other than its default with no calibration ``data``: refused, as it would do nothing;
    * the second text's column is not the text column (None counting as :data:`DEFAULT_TEXT_COL`): a pair of
      one text twice is no sentence pair.

    A config whose columns only some modes use (int8: static only) refuses them there itself, first. The message
    that names ``data_name`` inside its text lists it in ``ConfigError.mentions`` (a command line names its option
    there, as it does the leading field)."""
    for name, v, default in ((names[0], text_col, text_default), (names[1], pair_col, None)):
        if v is None and default is None:
            continue
        check_column_name(v, name)
        if data is None and v != default:
            raise ConfigError(f"{name}: names a column of the calibration file, and no {data_name} is given",
                              mentions=(data_name,))
    check_pair_column(pair_col, DEFAULT_TEXT_COL if text_col is None else text_col, names[1])


def check_column_name(v: Any, name: str) -> None:
    """ConfigError ``name: expected a column name, got ...`` unless ``v`` is a :data:`ColumnName` (the words of
    every column option: the calibration configs' and ``train.config.DataConfig``'s)."""
    problem = _column_problem(v)
    if problem is not None:
        raise ConfigError(f"{name}: {problem}")


def label_column_problem(text_col: Any, label_col: Any) -> str | None:
    """The one rule for the label column beside the text column (``train.config.DataConfig``,
    ``data.load_dataset``, a recipe's eval step): None, or what is wrong, for the caller to put after the fields
    it names: each text would be its own label (a head of as many classes as rows was trained once)."""
    if text_col == label_col:
        return f"both name the column {show(text_col)}; the labels are another column"
    return None


def pair_column_problem(pair_col: Any, text_col: Any, label_col: Any = None) -> str | None:
    """The one rule for the second text of a sentence pair (``pair_col``, None: none): None, or what is wrong
    when it is a column the config already reads (the text column, or the label column where it has one)."""
    which = (None if pair_col is None else "text" if pair_col == text_col
             else "label" if label_col is not None and pair_col == label_col else None)
    return None if which is None else f"{show(pair_col)} is also the {which} column; the second text is another one"


def check_pair_column(pair_col: Any, text_col: Any, name: str, label_col: Any = None) -> None:
    """ConfigError ``name: 'x' is also the text column; ...`` (:func:`pair_column_problem`)."""
    problem = pair_column_problem(pair_col, text_col, label_col)
    if problem is not None:
        raise ConfigError(f"{name}: {problem}")


def Choice(*values: str) -> Any:  # noqa: N802 - a type
    """One of ``values``, spelt in any case (``deploytool.choices.match_name``, the rule of every choice: an
    enum's value too), given back in its own spelling; anything else refused with a did-you-mean."""
    def check(v: Any) -> str:
        name = match_name(v, values)
        if name is None:
            raise invalid(not_one_of(values, v))
        return name

    return Annotated[str, PlainValidator(check)]


def OneOf(cls, values: Sequence[str] | None = None) -> Any:  # noqa: N802 - a type
    """A member of the enum ``cls`` (its value in any case; only ``values`` when given), with a did-you-mean
    (``deploytool.choices``, the one enum parser)."""
    members = list(cls) if values is None else [cls(v) for v in values]

    def check(v: Any):
        m = match_enum(cls, v, allowed=members) if isinstance(v, (str, cls)) else None
        if m is None:
            raise invalid(not_one_of(enum_choices(cls, allowed=members), v))
        return m

    return Annotated[cls, PlainValidator(check)]


# ----------------------------------------------------------------------------------- validation

EXTENSION_PREFIX = "x-"


def without_extensions(data: Any) -> Any:
    """A document's top level without its extension keys (``x-...``, as in Compose files): the home of YAML
    anchors a recipe or profile reuses (``x-bench: &bench {threads: 1}`` ... ``bench: *bench``), read by
    nothing else; every other unknown key stays an error. ``data`` itself is not modified."""
    if not isinstance(data, Mapping):
        return data
    return {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith(EXTENSION_PREFIX))}


def validate(cls: type, data: Any, source: str, *, context: Mapping[str, Any] | None = None):
    """``data`` (a parsed YAML document) as the schema ``cls``; ConfigError ``source: key.path: problem``."""
    try:
        return TypeAdapter(cls).validate_python(data, context=dict(context or {}))
    except ValidationError as e:
        raise ConfigError(format_error(e, source, cls)) from None


def _path(loc: Sequence[Any]) -> str:
    out = ""
    for x in loc:
        if isinstance(x, int):
            out += f"[{x}]"
        else:
            out += f".{_cut(str(x))}" if out else _cut(str(x))
    return out


def _unwrap(t: Any) -> Any:
    while True:
        origin = typing.get_origin(t)
        if origin is Annotated:
            t = typing.get_args(t)[0]
        elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            args = [a for a in typing.get_args(t) if a is not type(None)]
            if len(args) != 1:
                return t
            t = args[0]
        else:
            return t


def _keys_at(root: Any, loc: Sequence[Any]) -> list[str]:
    """The keys the schema allows at ``loc`` (for a did-you-mean), or [] when that is not a schema."""
    t = root
    for step in loc:
        t = _unwrap(t)
        if isinstance(t, type) and dataclasses.is_dataclass(t):
            t = typing.get_type_hints(t, include_extras=True).get(str(step))
        elif typing.get_origin(t) in (list, tuple, Sequence, frozenset, set):
            t = typing.get_args(t)[0] if typing.get_args(t) else None
        elif typing.get_origin(t) in (dict, Mapping):
            t = typing.get_args(t)[1] if typing.get_args(t) else None
        else:
            return []
        if t is None:
            return []
    t = _unwrap(t)
    return [f.name for f in dataclasses.fields(t)] if isinstance(t, type) and dataclasses.is_dataclass(t) else []


_WHAT = {"int": "an integer", "float": "a number", "string": "a string", "bool": "true or false", "list": "a list",
         "tuple": "a list", "dict": "a mapping", "dataclass": "a mapping", "model": "a mapping", "set": "a list",
         "frozen_set": "a list"}
_BOUND = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


_MAX_PROBLEM = 400  # characters: a message names the value in brief (:func:`show`), a list of choices in full


def format_error(e: ValidationError, source: str, root: Any = None) -> str:
    """The first error of ``e`` as deploytool's one line: ``source: key.path: problem``."""
    errors = e.errors(include_url=False)
    # an unknown key first (a typo'd key also makes its right spelling "missing"), as a reader fixes it first
    err = next((x for x in errors if x["type"] in ("unexpected_keyword_argument", "extra_forbidden")), errors[0])
    loc, typ, ctx, got = list(err["loc"]), err["type"], err.get("ctx") or {}, err.get("input")
    # a PlainValidator's type, a function validator's name: pydantic adds them to the path; we do not
    loc = [x for x in loc if not (isinstance(x, str) and ("[" in x or x.startswith("function-")))]
    # one line of bounded length whatever the input: a validator's message may echo a value or a key
    problem = _cut(" ".join(_problem(typ, ctx, got, err["msg"], root, loc).splitlines()), _MAX_PROBLEM)
    path = _path(loc) + (_cut(str(ctx.get("at", ""))) if typ == "deploytool" else "")
    if typ in ("unexpected_keyword_argument", "extra_forbidden"):
        path = _path(loc)
    return ": ".join(x for x in (source, path, problem) if x)


def _problem(typ: str, ctx: Mapping[str, Any], got: Any, msg: str, root: Any, loc: list) -> str:
    if typ == "deploytool":
        return str(ctx["message"])
    if typ in ("unexpected_keyword_argument", "extra_forbidden"):
        allowed = _keys_at(root, loc[:-1]) if root is not None else []
        hint = did_you_mean(_cut(str(loc[-1])), allowed) if loc else ""
        if not hint and allowed:
            hint = f" (allowed: {', '.join(allowed)})"
        return f"unknown key{hint}"
    if typ in ("missing", "missing_argument", "missing_keyword_only_argument", "missing_positional_only_argument"):
        return "required key is missing"
    if typ in ("enum", "literal_error"):
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return not_one_of(allowed, got)
    if typ in _BOUND:
        bound = next(iter(ctx.values()), "?")
        return f"expected a value {_BOUND[typ]} {bound}, got {show(got)}"
    if typ in ("value_error", "assertion_error"):
        text = str(ctx.get("error", msg))
        return re.sub(r"^(Value|Assertion) error, ", "", text)
    for prefix, what in _WHAT.items():
        if typ in (f"{prefix}_type", f"{prefix}_parsing", f"{prefix}_from_float"):
            return f"expected {what}, got {kind_of(got)}"
    return f"{msg[:1].lower()}{msg[1:]}, got {kind_of(got)}"


#: the most nodes a YAML document may hold with its aliases expanded: a profile or a recipe has a few
#: hundred; nested aliases ("billion laughs") reach 10**9 in a few lines, and every consumer of the
#: loaded data (validation, ``repr``, JSON output) walks it expanded
MAX_YAML_NODES = 100_000


def _expanded_nodes(root: Any, limit: int) -> int:
    """How many nodes the composed YAML graph ``root`` holds with aliases expanded, counting each shared node
    once (memoised), so in time linear in the document; ``yaml.YAMLError`` above ``limit`` or for an alias
    inside its own anchor (a recursive document)."""
    import yaml

    def children(node: Any) -> list:
        if isinstance(node, yaml.MappingNode):
            return [x for pair in node.value for x in pair]
        return list(node.value) if isinstance(node, yaml.SequenceNode) else []

    size: dict[int, int] = {}
    open_: set[int] = set()  # the nodes whose subtree is being counted: meeting one again is a cycle
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, counted = stack.pop()
        if counted:
            open_.discard(id(node))
            size[id(node)] = n = 1 + sum(size[id(c)] for c in children(node))
            if n > limit:
                raise yaml.composer.ComposerError(
                    None, None, f"the document holds more than {limit:,} values with its aliases (*name) expanded "
                                "(nested aliases: a 'billion laughs' document?)", node.start_mark)
            continue
        if id(node) in size:
            continue
        open_.add(id(node))
        stack.append((node, True))
        for c in children(node):
            if id(c) in open_:
                raise yaml.composer.ComposerError(None, None, "an alias refers to a node that contains it "
                                                              "(a recursive document)", c.start_mark)
            if id(c) not in size:
                stack.append((c, False))
    return size[id(root)]


def read_text_file(p: os.PathLike, noun: str, max_bytes: int, typical: str) -> str:
    """The UTF-8 text of the small YAML file ``p`` (a ``noun``: device profile, recipe), or ConfigError in one line:
    unreadable; over ``max_bytes`` (refused unread: a data file or a log given in its place took seconds and
    hundreds of MB to be parsed and refused; ``typical`` says how big one is); not UTF-8 (the line of the first
    bad byte, or that it is UTF-16, not Python's byte offset)."""
    try:
        with open(p, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as e:
        raise ConfigError(f"{p}: cannot read {noun} ({e.strerror or e})") from None
    if len(raw) > max_bytes:
        raise ConfigError(f"{p}: more than {max_bytes // 1_000_000} MB, far more than a {noun} file holds ({typical}); "
                          "is it the file you meant?")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        what = ("UTF-16 text, not UTF-8" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else
                f"not UTF-8 text: byte 0x{raw[e.start]:02x} at line {line}")
        raise ConfigError(f"{p}: {what}; save it as UTF-8") from None


def yaml_error_at(e: Exception, text: str) -> tuple[int | None, str]:
    """(line, problem) of a YAML error in ``text``: a parser error carries its mark and problem; a reader error (a
    control character such as NUL, which YAML does not allow) only its offset in the text and its reason."""
    import yaml

    if isinstance(e, yaml.reader.ReaderError):
        return text[: e.position].count("\n") + 1, f"character #x{e.character:04x}: {e.reason}"
    mark = getattr(e, "problem_mark", None)
    return (None if mark is None else mark.line + 1), str(getattr(e, "problem", None) or type(e).__name__)


def safe_load_yaml(text: str) -> Any:
    """``yaml.safe_load`` (the same safe constructors: plain data only), except that

    * a mapping naming one key twice is an error (``yaml.YAMLError`` at the second key's line) instead of the
      last one silently winning: a recipe with two ``name:`` or a profile with two ``threads:`` is a typo to
      report, not to guess;
    * a document larger than :data:`MAX_YAML_NODES` values with its aliases expanded (an alias bomb), or one
      whose alias refers to a node that contains it, is refused (``yaml.YAMLError``) before it is built;
    * what Python itself cannot read (nesting deeper than its recursion limit, an integer of more than
      4300 digits) is a ``yaml.YAMLError`` too, never an internal error;
    * a number in exponent notation is a number as YAML 1.2 reads it (``5e-1``, ``1e5``, ``1.0e5``): YAML 1.1 reads
      them as text unless written with a dot and a signed exponent (``width: [5e-1]`` was refused as "got str").
    """
    import re

    import yaml

    class _Loader(yaml.SafeLoader):
        def construct_document(self, node):
            _expanded_nodes(node, MAX_YAML_NODES)
            return super().construct_document(node)

    _Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                                  re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
                                  list("-+0123456789."))

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:  # the node's own keys: a key merged in (``<<: *base``) may be overridden
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = loader.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError("while reading a mapping", node.start_mark,
                                                        f"key {show(key)} appears twice", key_node.start_mark)
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise yaml.composer.ComposerError(None, None, "nested too deeply to read", None) from None
    except ValueError as e:  # int("1" * 5000): Python's limit on integer digits
        raise yaml.constructor.ConstructorError(None, None, f"a value Python cannot read ({_cut(str(e))})",
                                                None) from None
