"""Metering expressions: CEL compiled once per cold start, with the variables each mode offers,
and their results turned into quantities."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, get_args

import cel

from usage_meter.models.wire import MAX_QUANTITY
from usage_meter_metering.errors import MeteringConfigError, Skip

Mode = Literal["request", "bytes", "response_field", "sse", "custom"]
MODES: tuple[str, ...] = get_args(Mode)

MAX_EXPRESSION_CHARS = 1024
DECIMAL_PLACES = 9
_QUANTUM = Decimal(1).scaleb(-DECIMAL_PLACES)

REQUEST_VARIABLES = frozenset({"status", "path", "method", "requestBytes", "responseBytes"})
BODY_VARIABLES = frozenset({"respBody", "sseEvents", "allData"})
VARIABLES: dict[str, frozenset[str]] = {
    "request": frozenset(),
    "bytes": frozenset({"requestBytes", "responseBytes"}),
    "response_field": frozenset({"respBody"}),
    "sse": frozenset({"sseEvents", "allData"}),
    "custom": REQUEST_VARIABLES | BODY_VARIABLES,
}
DEFAULT_EXPRESSIONS: dict[str, str] = {"bytes": "responseBytes", "sse": "sseEvents"}
COMPREHENSION_MACROS = ("all", "exists", "exists_one", "map", "filter")
_MACRO_CALL = re.compile(r"\.\s*(" + "|".join(COMPREHENSION_MACROS) + r")\s*\(")


def code_only(source: str) -> str:
    """The expression with the contents of string and bytes literals and of comments blanked,
    so that a scan for macro calls sees code only (`'.map('` is text, not a call)."""
    out = list(source)
    i, n = 0, len(source)
    while i < n:
        if source.startswith("//", i):
            end = source.find("\n", i)
            end = n if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
            continue
        char = source[i]
        if char not in "'\"":
            i += 1
            continue
        start = i
        while start > 0 and source[start - 1] in "rRbB":
            start -= 1
        prefix = source[start:i]
        is_prefix = len(prefix) <= 2 and (
            start == 0 or not (source[start - 1].isalnum() or source[start - 1] == "_")
        )
        raw = is_prefix and "r" in prefix.lower()
        quote = source[i : i + 3] if source.startswith(char * 3, i) else char
        j = i + len(quote)
        while j < n and not source.startswith(quote, j):
            j += 2 if source[j] == "\\" and not raw else 1
        end = min(j + len(quote), n)
        out[i:end] = " " * (end - i)
        i = end
    return "".join(out)


@dataclass(frozen=True)
class Expression:
    """A compiled metering expression, the variables it reads, and the parts of respBody it
    selects (None: it uses respBody as a whole)."""

    source: str
    program: cel.Program
    variables: frozenset[str]
    body_paths: tuple[tuple[str, ...], ...] | None = None

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        return self.program.execute(dict(variables))


def compile_expression(source: str, allowed: frozenset[str]) -> Expression:
    """Compile a CEL expression that may read only `allowed` variables.

    Raises MeteringConfigError for an over-long expression, a comprehension macro, a syntax
    error (with CEL's position marker) or a variable that is not allowed.
    """
    if not isinstance(source, str) or not source.strip():
        raise MeteringConfigError("a metering expression must be a non-empty string")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise MeteringConfigError(
            f"a metering expression is at most {MAX_EXPRESSION_CHARS} characters (this one: {len(source)})"
        )
    try:
        program = cel.compile(source)
    except ValueError as exc:
        raise MeteringConfigError(f"metering expression {source!r} does not compile: {exc}") from exc
    code = code_only(source)
    macro = _MACRO_CALL.search(code)
    if macro is not None:
        raise MeteringConfigError(
            f"metering expression {source!r} uses the comprehension macro {macro.group(1)}(); "
            "comprehensions are not allowed: their cost grows with the response. Have the "
            "handler return the figure to meter (e.g. a count) in its response instead."
        )
    variables = frozenset(program.variables())
    unknown = sorted(variables - allowed)
    if unknown:
        raise MeteringConfigError(
            f"metering expression {source!r} reads {', '.join(unknown)}; "
            f"this mode offers {', '.join(sorted(allowed)) or 'no variables'}"
        )
    return Expression(source=source, program=program, variables=variables, body_paths=_body_paths(code))


_BODY_USE = re.compile(r"(?<![\w.])respBody((?:\s*\.\s*[A-Za-z_]\w*)*)(\s*\(?)")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def _body_paths(code: str) -> tuple[tuple[str, ...], ...] | None:
    """The field paths the expression selects from respBody (`respBody.usage.total_tokens` ->
    ("usage", "total_tokens")), or None when it uses respBody otherwise (bare, indexed).

    Only these paths are handed to the CEL engine, which converts every value it is given: a
    1 MiB body costs ~100 ms to convert whole, a selected field microseconds.
    """
    paths: list[tuple[str, ...]] = []
    for use in _BODY_USE.finditer(code):
        path = tuple(_IDENTIFIER.findall(use.group(1)))
        if use.group(2).strip():  # respBody.items.size(): the last name is a method
            path = path[:-1]
        if not path:
            return None
        paths.append(path)
    return tuple(paths) or None


def select_paths(value: Any, paths: tuple[tuple[str, ...], ...]) -> Any:
    """`value` with only the object members on `paths` (each path's end value whole).

    Selecting a path from the result gives what selecting it from `value` gives, missing
    members included; anything that is not an object on the way is kept whole, so the engine
    fails on it the same way."""
    trie: dict[str, Any] = {}
    for path in paths:
        node: dict[str, Any] | None = trie
        for name in path[:-1]:
            assert node is not None
            child = node.setdefault(name, {})
            if child is None:  # a shorter path already keeps this member whole
                node = None
                break
            node = child
        if node is not None:
            node[path[-1]] = None

    def walk(item: Any, node: dict[str, Any] | None) -> Any:
        if node is None or not isinstance(item, dict):
            return item
        return {name: walk(item[name], child) for name, child in node.items() if name in item}

    return walk(value, trie)


def to_quantity(value: Any) -> Decimal:
    """An expression's result as a quantity for `track()`: exact for ints, doubles through
    their repr rounded half-up to 9 decimal places; > 0 and <= 1e12, else Skip."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Skip("not_a_number", resultType=type(value).__name__)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Skip("not_a_number", resultType="double")
        quantity = Decimal(repr(value))
        if quantity > MAX_QUANTITY:  # before quantize: 1e300 has no 9-place form in 28 digits
            raise Skip("too_large")
        quantity = quantity.quantize(_QUANTUM, rounding=ROUND_HALF_UP).normalize()
    else:
        quantity = Decimal(value)
    if quantity <= 0:
        raise Skip("non_positive")
    if quantity > MAX_QUANTITY:
        raise Skip("too_large")
    return quantity
