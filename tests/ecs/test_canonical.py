"""Canonical JSON writes numbers exactly as JavaScript does, so a browser gets the same bytes."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.ecs.canonical import canonical_json, format_number

# What node's JSON.stringify prints for each (checked by hand once; the node test below
# re-checks arbitrary floats when node is installed).
JS_NUMBERS = [
    (1e-7, "1e-7"),
    (1e21, "1e+21"),
    (1e20, "100000000000000000000"),
    (0.000001, "0.000001"),
    (1 / 512, "0.001953125"),
    (-4096.0, "-4096"),
    (-0.0, "0"),
    (0.1 + 0.2, "0.30000000000000004"),
    (1.5e-10, "1.5e-10"),
    (123456789012345680000.0, "123456789012345680000"),
    (5e-324, "5e-324"),
    (63.984375, "63.984375"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (12, "12"),
]


@pytest.mark.parametrize(("value", "text"), JS_NUMBERS)
def test_numbers_are_written_as_javascript_writes_them(value: float, text: str) -> None:
    assert format_number(value) == text
    assert float(text) == value  # and they round-trip


def test_keys_are_sorted_and_there_is_no_whitespace() -> None:
    value = {"b": [1, 2.5, None, True], "a": {"z": "é", "y": False}}
    assert canonical_json(value) == '{"a":{"y":false,"z":"é"},"b":[1,2.5,null,true]}'.encode()
    assert json.loads(canonical_json(value)) == value


@pytest.mark.parametrize("bad", [math.nan, math.inf, {1: 2}, b"bytes", object()])
def test_what_json_cannot_carry_is_refused(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        canonical_json([bad])


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@settings(max_examples=1, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=200, max_size=200))
def test_node_json_stringify_agrees_on_arbitrary_floats(values: list[float]) -> None:
    values += [v for v, _ in JS_NUMBERS]
    script = "const v=JSON.parse(require('fs').readFileSync(0,'utf8'));"
    script += "process.stdout.write(JSON.stringify(v))"
    out = subprocess.run(
        ["node", "-e", script],
        input=json.dumps(values),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert canonical_json(values).decode() == out
