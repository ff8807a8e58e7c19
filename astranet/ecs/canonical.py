"""Canonical JSON: one byte string per value, the same in Python and in a browser.

Operations: :func:`canonical_json` serializes dicts (str keys), lists/tuples, str, int, float,
bool and None as UTF-8 JSON with keys sorted and no spaces.
Goals: ``JSON.stringify`` of the same value with keys sorted (recursively) gives *the same
bytes*, so a JavaScript client can recompute a CRC32 over it (the schema fingerprint, see
docs/protocol.md "Schema check"). Python's ``json.dumps`` differs from JavaScript only in
numbers (``1e-07`` vs ``1e-7``, ``4096.0`` vs ``4096``), so numbers are written by
:func:`format_number`, which follows ECMAScript's Number::toString (shortest round-trip digits,
exponent form below 1e-6 and from 1e21).
Limits: floats must be finite (JSON has no NaN); keys sort by code point, which matches
JavaScript's default sort for the ASCII names a schema uses.
Benchmark: none (computed once per schema).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

__all__ = ["canonical_json", "format_number"]


def format_number(value: int | float) -> str:
    """``value`` as ECMAScript's ``Number.prototype.toString`` writes it (integers exactly)."""
    if isinstance(value, bool):
        raise TypeError("a bool is not a number here")
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValueError(f"JSON cannot carry {value!r}")
    if value == 0:
        return "0"  # JSON.stringify(-0) is "0" too
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digits that round-trip (as ECMAScript asks); Decimal splits them.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    raw = "".join(map(str, digit_tuple))  # abs(value) == int(raw) * 10**exponent
    digits = raw.rstrip("0")
    k = len(digits)
    n = int(exponent) + len(raw)  # abs(value) == 0.DIGITS * 10**n (ECMAScript's n and k)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + text


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, (int, float)):
        out.append(format_number(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if not isinstance(key, str):
                raise TypeError(f"canonical JSON keys must be str, got {key!r}")
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON-able")


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON of ``value``: keys sorted, no whitespace, ECMAScript number format."""
    out: list[str] = []
    _write(value, out)
    return "".join(out).encode("utf-8")
