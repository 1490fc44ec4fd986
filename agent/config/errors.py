r"""Config problems as a person reads them: `ConfigError`, one `key.path: sentence` line each.

pydantic names a fault in its own terms ("Input should be a valid integer", "String should match
pattern '^\d{14}$'", "Input tag 'mqtx' found using 'kind' does not match any of the expected
tags"). `problems_of` turns each error into a sentence that names the key as the file spells it
(`destinations[0].kind`), says what is expected and what was found (`got 'ten'`, TOML's `true`),
suggests the close spelling of an unknown key or choice (difflib), says which kind of table a
key is for when it is another kind's (`keymap` on a serial scanner), and leaves out lines that
only follow from another problem: an array's "too short" when one of its items failed, and a
required key reported missing when an unknown key next to it is its misspelling.

It walks the model the error came from (the root model is passed in), so a discriminated
union's branch in an error's location (a key's value, or a callable discriminator's `Tag`) is
recognised as such and left out of the key path, and the keys and choices a table allows are
known for suggestions.
"""

from __future__ import annotations

import difflib
import enum
import re
import types
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Discriminator, Tag
from pydantic.fields import FieldInfo

if TYPE_CHECKING:
    from collections.abc import Callable

    from pydantic import ValidationError
    from pydantic_core import ErrorDetails

PATTERNS: dict[str, str] = {
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$": (
        "must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
    ),
    r"^\d{14}$": "must be 14 digits (a GTIN-14)",
    r"^[A-Za-z0-9_.-]+$": "must be letters, digits, '_', '.' or '-'",
    r"^[A-Za-z0-9][A-Za-z0-9_-]*$": (
        "must be letters, digits, '_' or '-', starting with a letter or digit"
    ),
    r"^[!-~]+$": "must be printable ASCII characters without spaces (a GS1 lot)",
    r"^(\d{7,10})?$": "must be 7 to 10 digits (a GS1 company prefix)",
    r"^(coil|discrete|holding|input):\d+(:\w+)*$": (
        "must be a register address like 'holding:100:uint32'"
    ),
    r"^opc\.tcp://": "must be an OPC UA endpoint URL like 'opc.tcp://10.0.0.21:4840'",
    r"^(ns=\d+;)?[isgb]=.+$": "must be an OPC UA node id like 'ns=2;s=Line.BatchDone'",
    r"^DB\d+\.DB[XBWD]\d+(\.\d)?(:\w+)*$": "must be an S7 address like 'DB10.DBX0.0'",
    r"^[A-Za-z_:][\w:.\[\],]*$": "must be a Logix tag name like 'BatchDone'",
}
"""What each pattern of the config models means, in words (a test checks none is missing)."""

_CLOSE = 0.6  # difflib's similarity cut-off for "did you mean"
_MISSING = "required key is missing"


class ConfigError(Exception):
    """The config file cannot be used; `problems` holds one `key.path: message` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def problems_of(error: ValidationError, root: type[BaseModel]) -> list[str]:
    """One `key.path: sentence` line per problem of `error`, raised validating `root`."""
    errors = error.errors(include_url=False)
    misspelt = {
        (*err["loc"][:-1], close)
        for err in errors
        if err["type"] == "extra_forbidden"
        for close in _close(str(err["loc"][-1]), _keys(_walk(root, tuple(err["loc"][:-1]))[1]))
    }
    lines: list[str] = []
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == "too_short" and any(
            len(other["loc"]) > len(loc) and tuple(other["loc"][: len(loc)]) == loc
            for other in errors
        ):
            continue  # an item failed, so fewer validated: that item's own line says why
        if err["type"] == "missing" and loc in misspelt:
            continue  # the unknown key beside it is its misspelling, and its line says so
        path, message = _line(err, root)
        # a whole-file check may find several problems: one `key: sentence` line each
        lines.extend(f"{path or '(top level)'}: {message}".splitlines())
    return lines


# --- one error -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Fault:
    """One pydantic error, with the key path and the type found where it points."""

    kind: str
    path: str
    target: Any
    ctx: dict[str, Any]
    value: object
    parent: Any  # the type of the table that holds the key
    key: str  # the last part of the location
    others: list[tuple[type[BaseModel], str]]  # when the table is a union's branch: the others

    @property
    def got(self) -> str:
        return _shown(self.value)


def _line(err: ErrorDetails, root: type[BaseModel]) -> tuple[str, str]:
    """The key path and the sentence of one error."""
    loc = tuple(err["loc"])
    path, target = _walk(root, loc)
    fault = _Fault(
        kind=err["type"],
        path=path,
        target=target,
        ctx=dict(err.get("ctx") or {}),
        value=err.get("input"),
        parent=_walk(root, loc[:-1])[1],
        key=str(loc[-1]) if loc else "",
        others=_other_branches(root, loc),
    )
    if fault.kind in {"union_tag_invalid", "union_tag_not_found"}:
        return _union_tag(fault)
    if fault.kind in {"value_error", "assertion_error"}:
        # a check of our own, already a sentence; a whole-file check names its own key path
        message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if not path and message.startswith(("scanners[", "plcs[", "destinations[")):
            own_path, _, message = message.partition(": ")
            return own_path, message
        return path, message
    sentence = _SENTENCES.get(fault.kind)
    return path, sentence(fault) if sentence is not None else str(err["msg"])


def _union_tag(fault: _Fault) -> tuple[str, str]:
    key = str(fault.ctx.get("discriminator", "")).strip("'")
    tags = ", ".join(_tags(fault.target))
    if fault.kind == "union_tag_not_found":
        return f"{fault.path}.{key}", f"{_MISSING} (one of {tags})"
    return f"{fault.path}.{key}", f"unknown {key} {_shown(fault.ctx.get('tag'))} (one of {tags})"


def _pattern(fault: _Fault) -> str:
    pattern = str(fault.ctx.get("pattern", ""))
    described = PATTERNS.get(pattern, f"does not have the expected form ({pattern})")
    return f"{described}, got {fault.got}"


def _array(fault: _Fault) -> str:
    header = _header(fault.path)
    item = _step(fault.target, 0)
    if isinstance(fault.value, dict) and (_is_model(item) or _tags(item)):
        return f"expected an array of tables ([[{header}]]), got a table ([{header}])"
    if isinstance(fault.value, str):
        return f'expected an array like ["{fault.value}"], got {fault.got}'
    return f"expected an array, got {fault.got}"


def _too_short(fault: _Fault) -> str:
    least = int(fault.ctx.get("min_length", 1))
    if least > 1:
        what = "characters" if fault.kind.startswith("string") else "entries"
        return f"must have at least {least} {what}"
    required = _missing(fault)
    return "must not be empty" if required == _MISSING else required


def _too_long(fault: _Fault) -> str:
    what = "characters" if fault.kind.startswith("string") else "entries"
    value = fault.value
    has = len(value) if isinstance(value, str | list | tuple | dict) else "more"
    return f"must be at most {fault.ctx.get('max_length')} {what} (it has {has})"


def _missing(fault: _Fault) -> str:
    if _is_model(fault.target):
        return f"required table [{_header(fault.path)}] is missing"
    item = _step(fault.target, 0)
    if get_origin(_plain(fault.target)) in {tuple, list} and (_is_model(item) or _tags(item)):
        return f"required: at least one [[{fault.path}]] table"
    return _MISSING


def _unknown_key(fault: _Fault) -> str:
    """An unknown key, or a key of another kind of the same table (a serial key on HID...)."""
    owners = [hint for model, hint in fault.others if fault.key in model.model_fields]
    if not owners:
        return "unknown key" + _did_you_mean(fault.key, _keys(fault.parent))
    return "only for " + " or ".join(owners)


_WHOLE = "expected a whole number, got {}"
_NUMBER = "expected a number, got {}"
_BOOL = "expected true or false, got {}"
_TIME = 'expected a time like "06:00", got {}'
_TABLE = "expected a table ([{}]), got {}"

_SENTENCES: dict[str, Callable[[_Fault], str]] = {
    "missing": _missing,
    "extra_forbidden": _unknown_key,
    "literal_error": lambda f: _choice(f.value, _choices(f.target)),
    "enum": lambda f: _choice(f.value, _choices(f.target)),
    "string_pattern_mismatch": _pattern,
    "int_parsing": lambda f: _WHOLE.format(f.got),
    "int_from_float": lambda f: _WHOLE.format(f.got),
    "int_type": lambda f: _WHOLE.format(f.got),
    "float_parsing": lambda f: _NUMBER.format(f.got),
    "float_type": lambda f: _NUMBER.format(f.got),
    "string_type": lambda f: f"expected text in quotes, got {f.got}",
    "bool_parsing": lambda f: _BOOL.format(f.got),
    "bool_type": lambda f: _BOOL.format(f.got),
    "time_parsing": lambda f: _TIME.format(f.got),
    "time_type": lambda f: _TIME.format(f.got),
    "path_type": lambda f: f"expected a path in quotes, got {f.got}",
    "greater_than": lambda f: f"must be greater than {f.ctx.get('gt')}, got {f.got}",
    "greater_than_equal": lambda f: f"must be at least {f.ctx.get('ge')}, got {f.got}",
    "less_than": lambda f: f"must be less than {f.ctx.get('lt')}, got {f.got}",
    "less_than_equal": lambda f: f"must be at most {f.ctx.get('le')}, got {f.got}",
    "model_type": lambda f: _TABLE.format(_header(f.path), f.got),
    "model_attributes_type": lambda f: _TABLE.format(_header(f.path), f.got),
    "dict_type": lambda f: _TABLE.format(_header(f.path), f.got),
    "tuple_type": _array,
    "list_type": _array,
    "set_type": _array,
    "too_short": _too_short,
    "string_too_short": _too_short,
    "too_long": _too_long,
    "string_too_long": _too_long,
}
"""The sentence of each pydantic error type a config can meet (others keep pydantic's words)."""


def _choice(value: object, choices: list[object]) -> str:
    if len(choices) == 1:
        return f"must be {_shown(choices[0])}, got {_shown(value)}"
    listed = ", ".join(_shown(c) for c in choices)
    hint = _did_you_mean(value, [str(c) for c in choices]) if isinstance(value, str) else ""
    return f"must be one of {listed}, got {_shown(value)}{hint}"


def _close(word: str, options: list[str]) -> list[str]:
    """The option `word` is most likely a misspelling of (none, or one)."""
    return difflib.get_close_matches(word, options, n=1, cutoff=_CLOSE)


def _did_you_mean(word: str, options: list[str]) -> str:
    close = _close(word, options)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _header(path: str) -> str:
    """The TOML table header of a key path: `plcs[0].batch` → `plcs.batch`."""
    return re.sub(r"\[\d+\]", "", path)


def _shown(value: object) -> str:
    """A found value as a person recognises it from the file (TOML's true/false, tables...)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return repr(value.value)
    return repr(value)


# --- the model an error's location points at -------------------------------------------------


def _walk(root: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, Any]:
    """The key path of `loc` as the file spells it, and the type found there (None: unknown)."""
    path = ""
    target: Any = root
    for part in loc:
        if isinstance(part, str) and part.startswith(("function-", "constrained-")):
            continue  # a validator's own step, not a key of the file
        if isinstance(part, str) and part in _tags(target):
            target = _tags(target)[part]  # a union's branch, not a key of the file
            continue
        target = _step(target, part)
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path, target


def _other_branches(
    root: type[BaseModel], loc: tuple[int | str, ...]
) -> list[tuple[type[BaseModel], str]]:
    """When `loc` names a key of a union's branch, the other branches, each with its words.

    The words are the branch's own `branch_hint` if it has one (a callable discriminator's tag
    means nothing to a reader), else `kind = 'http'`.
    """
    if len(loc) < 2:  # noqa: PLR2004 - a branch's tag, then the key
        return []
    union = _walk(root, loc[:-2])[1]
    branches = _tags(union)
    if loc[-2] not in branches:
        return []
    key = next((m.discriminator for m in get_args(union)[1:] if isinstance(m, FieldInfo)), None)
    return [
        (model, str(getattr(model, "branch_hint", f"{key} = {tag!r}")))
        for tag, model in branches.items()
        if tag != loc[-2]
    ]


def _plain(tp: Any) -> Any:
    """`tp` without Annotated and without `| None`."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin in {Union, types.UnionType}:
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _step(tp: Any, part: int | str) -> Any:
    plain = _plain(tp)
    origin = get_origin(plain)
    if isinstance(part, int):
        return get_args(plain)[0] if origin in {tuple, list} and get_args(plain) else None
    if _is_model(plain):
        field = plain.model_fields.get(part)
        return None if field is None else _with_metadata(field)
    if origin is dict:
        return get_args(plain)[1]
    return None


def _with_metadata(field: FieldInfo) -> Any:
    """A field's type with its discriminator, if it has one (pydantic moves it to the field)."""
    if field.discriminator is not None:
        return Annotated[field.annotation, FieldInfo(discriminator=field.discriminator)]
    return field.annotation


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _keys(tp: Any) -> list[str]:
    plain = _plain(tp)
    return list(plain.model_fields) if _is_model(plain) else []


def _tags(tp: Any) -> dict[str, type[BaseModel]]:
    """A discriminated union's branches by tag (empty for any other type).

    The tag is a key's value (`Field(discriminator="kind")`), or a callable's answer
    (`Discriminator(func)`), each branch then marked with its `Tag`.
    """
    if get_origin(tp) is not Annotated:
        return {}
    inner, *meta = get_args(tp)
    if get_origin(inner) not in {Union, types.UnionType}:
        return {}
    key = next(
        (m.discriminator for m in meta if isinstance(m, FieldInfo) and m.discriminator),
        next((m for m in meta if isinstance(m, Discriminator)), None),
    )
    branches: dict[str, type[BaseModel]] = {}
    for member in get_args(inner):
        if isinstance(key, Discriminator) and get_origin(member) is Annotated:
            model, *marks = get_args(member)
            for mark in marks:
                if isinstance(mark, Tag) and _is_model(model):
                    branches[mark.tag] = model
        elif isinstance(key, str) and _is_model(member) and key in member.model_fields:
            for tag in get_args(member.model_fields[key].annotation):
                branches[str(tag)] = member
    return branches


def _choices(tp: Any) -> list[object]:
    plain = _plain(tp)
    if get_origin(plain) is Literal:
        return list(get_args(plain))
    if isinstance(plain, type) and issubclass(plain, enum.Enum):
        return [m.value for m in plain]
    return []
