"""Schema declarations: fields in declaration order, bad declarations are typed errors."""

import json
import zlib

import pytest

from astranet.ecs.schema import (
    Angle,
    Bool,
    Float,
    Quantized,
    Quaternion,
    Schema,
    SchemaError,
    replicated,
)


@replicated
class Body:
    pos = Quantized(-100.0, 100.0, 0.01, size=2)
    heading = Angle(10)
    not_a_field = 3


@replicated
class Status:
    alive = Bool()
    hp = Float()


def test_fields_are_named_and_ordered_by_declaration() -> None:
    schema = Schema(Body, Status)
    assert [f.name for f in schema.fields] == [
        "Body.pos",
        "Body.heading",
        "Status.alive",
        "Status.hp",
    ]
    assert schema.index("Status.alive") == 2
    assert Body.pos.code_bits == (15, 15)  # 20001 codes
    assert Quaternion(9).code_bits == (2, 9, 9, 9)


def test_fingerprint_depends_on_declarations() -> None:
    @replicated
    class Body2:
        pos = Quantized(-100.0, 100.0, 0.02, size=2)

    assert Schema(Body, Status).fingerprint == Schema(Body, Status).fingerprint
    assert Schema(Body, Status).fingerprint != Schema(Status, Body).fingerprint
    assert Schema(Body2).fingerprint != Schema(Body).fingerprint


@pytest.mark.parametrize(
    "make",
    [
        lambda: Quantized(1.0, 1.0, 0.1),
        lambda: Quantized(0.0, 1.0, 0.0),
        lambda: Quantized(0.0, 1e6, 1e-6),  # more than 32 bits
        lambda: Quantized(0.0, 4096.0, 1e-5),  # below float32 resolution
        lambda: Angle(0),
        lambda: Quaternion(1),
        lambda: Float(size=0),
    ],
)
def test_bad_encodings_raise_schema_error(make) -> None:
    with pytest.raises(SchemaError):
        make()


def test_bad_schemas_raise_schema_error() -> None:
    class Plain:
        pass

    with pytest.raises(SchemaError):
        Schema(Plain)
    with pytest.raises(SchemaError):
        replicated(Plain)
    with pytest.raises(SchemaError):
        Schema(Body, Body)
    with pytest.raises(SchemaError):
        Schema(Body).index("Body.nope")
    with pytest.raises(ValueError):  # SchemaError is also a ValueError
        Schema()


def test_describe_lists_components_fields_encodings_and_bit_widths() -> None:
    described = Schema(Body, Status).describe()
    assert described == {
        "format": 1,
        "components": [
            {
                "name": "Body",
                "fields": [
                    {
                        "name": "pos",
                        "encoding": "Quantized",
                        "lo": -100.0,
                        "hi": 100.0,
                        "step": 0.01,
                        "size": 2,
                        "code_bits": [15, 15],
                        "max_codes": [20000, 20000],
                    },
                    {
                        "name": "heading",
                        "encoding": "Angle",
                        "bits": 10,
                        "size": 1,
                        "code_bits": [10],
                        "max_codes": [1023],
                    },
                ],
            },
            {
                "name": "Status",
                "fields": [
                    {
                        "name": "alive",
                        "encoding": "Bool",
                        "size": 1,
                        "code_bits": [1],
                        "max_codes": [1],
                    },
                    {
                        "name": "hp",
                        "encoding": "Float",
                        "size": 1,
                        "code_bits": [32],
                        "max_codes": [4294967295],
                    },
                ],
            },
        ],
    }


def test_fingerprint_is_the_crc32_of_the_canonical_json() -> None:
    schema = Schema(Body, Status)
    canonical = schema.canonical_json()
    assert zlib.crc32(canonical) == schema.fingerprint
    assert json.loads(canonical) == schema.describe()
    assert b" " not in canonical
    assert canonical.startswith(b'{"components":[{"fields":[{"code_bits":[15,15],"encoding"')
