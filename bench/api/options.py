"""Checks of the values a user sets for a model's parameters (``[models.X]``) or a metric's options
(``[metrics.X]``), so a wrong one stops the run before anything is written, with a UserError.

Each value is checked against its default and two optional declarations of its owner:

* type: a value has the type of its default (an integer passes for a float, a list for a tuple;
  ``True``/``False`` is no number); parameters whose default is ``None`` take any type here;
* ``choices``: the values an option may take (for a list option, each item);
* ``bounds``: an interval in the usual notation with an optional ``integer``, e.g.
  ``"[1, inf) integer"`` or ``"(0, 1]"`` (for a list option, each item; ``None`` always passes).
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

from bench.api.errors import UserError

# the most common bounds: counts of at least one / two
INTEGER_1 = "[1, inf) integer"
INTEGER_2 = "[2, inf) integer"
_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def check_value(
    owner: str,
    table: str,
    name: str,
    value: Any,
    default: Any,
    *,
    choices: tuple[Any, ...] | None = None,
    bound: str | None = None,
) -> None:
    """UserError naming ``owner`` (``"metric auc"``) and the config ``table`` (``"[metrics.auc]"``)
    when ``value`` of ``name`` has the wrong type, is not one of ``choices`` or is outside ``bound``."""
    if not _same_kind(value, default):
        kind = (
            "a list"
            if isinstance(default, list | tuple)
            else _KINDS.get(type(default), type(default).__name__)
        )
        raise UserError(
            f"{owner}: {name} = {value!r} is not {kind}", f"write e.g. {name} = {toml(default)} in {table}"
        )
    many = isinstance(value, list | tuple)
    items = value if many else [value]
    if choices is not None and any(v not in choices for v in items):
        raise UserError(
            f"{owner}: {name} = {value!r} is not supported",
            f"{table} {name} takes {'items' if many else 'one'} of: {', '.join(map(str, choices))}",
        )
    if bound is not None and value is not None and not all(within(v, bound) for v in items):
        what = f"has an item that is not {describe(bound)}" if many else f"is not {describe(bound)}"
        raise UserError(
            f"{owner}: {name} = {value!r} {what}",
            f"set {'every item of ' if many else ''}{table} {name} to {describe(bound)}; "
            + ("unset by default" if default is None else f"the default is {toml(default)}"),
        )


def check_declared(owner: str, names: Any, choices: dict[str, Any], bounds: dict[str, str]) -> None:
    """ValueError for a plugin author: ``choices``/``bounds`` of a name that is not a parameter, or a
    malformed bound."""
    for name in {**choices, **bounds}:
        if name not in names:
            raise ValueError(f"{owner}: choices or bounds of {name!r}, which is not a parameter or option")
    for bound in bounds.values():
        within(0, bound)


def _same_kind(value: Any, default: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if isinstance(default, Integral):
        return isinstance(value, Integral)
    if isinstance(default, Real):
        return isinstance(value, Real)
    if isinstance(default, list | tuple):
        return isinstance(value, list | tuple)
    return isinstance(value, type(default))


def within(value: Any, bound: str) -> bool:
    """Whether ``value`` is a number in ``bound`` (``"[1, inf) integer"``, ``"(0, 1]"``, ...)."""
    end = max(bound.find(")"), bound.find("]")) + 1
    interval, kind = bound[:end], bound[end:].strip()
    if not interval or interval[0] not in "([" or kind not in ("", "integer") or interval.count(",") != 1:
        raise ValueError(f"malformed bound {bound!r}; write e.g. '[1, inf) integer' or '(0, 1]'")
    low, high = (float(x) for x in interval[1:-1].split(","))
    if isinstance(value, bool) or not isinstance(value, Real):
        return False
    if kind == "integer" and not isinstance(value, Integral):
        return False
    above = value > low if interval[0] == "(" else value >= low
    below = value < high if interval[-1] == ")" else value <= high
    return bool(above and below)


def describe(bound: str) -> str:
    """``"[1, inf) integer"`` -> ``"an integer in [1, inf)"``; ``"(0, 1)"`` -> ``"a number in (0, 1)"``."""
    integer = bound.endswith(" integer")
    return f"{'an integer' if integer else 'a number'} in {bound.removesuffix(' integer')}"


def toml(value: Any) -> str:
    """A value as a TOML config writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else repr(value)
