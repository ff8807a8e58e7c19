"""Replicated component declarations: which columns replicate and how each field is encoded.

A game declares a replicated component as a class whose attributes are field encodings::

    @replicated
    class Transform:
        pos = Quantized(-4096.0, 4096.0, 1 / 512, size=3)   # 2**22 + 1 codes: 23 bits
        rot = Quaternion(bits=9)                             # smallest three: 2 + 3 * 9 bits

    schema = Schema(Transform, Motion)

Each field becomes one column named ``"Transform.pos"`` in the
:class:`~astranet.ecs.store.ColumnStore` (float32 of shape ``(n,)`` or ``(n, size)``; bool for
:class:`Bool`). On capture every column is turned into integer *codes* of shape ``(n, k)``
(``k`` code components, each with a bit width); codes are what snapshots hold, compare, delta
and send, so "the quantized state" is exact.

Encodings: :class:`Float` (raw float32 bits), :class:`Quantized` (range + step),
:class:`Angle` (bits per turn), :class:`Quaternion` (smallest three), :class:`Bool` (one bit).
Limits: at most MAX_FIELDS fields; codes at most 32 bits per component.
Benchmark: benchmarks/test_bench_replication.py.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from astranet.ecs import quantize as q
from astranet.ecs.canonical import canonical_json
from astranet.errors import AstranetError

__all__ = [
    "MAX_FIELDS",
    "Angle",
    "Bool",
    "Encoding",
    "FieldSpec",
    "Float",
    "Quantized",
    "Quaternion",
    "Schema",
    "SchemaError",
    "replicated",
]

# The payload header stores the field count as u16 and per-update field bits as one bitmask per
# field; 256 fields is far beyond any game component set and keeps the header check meaningful.
MAX_FIELDS = 256


class SchemaError(AstranetError, ValueError):
    """A replicated component or field encoding is declared wrongly."""


def _code_dtype(bits: int) -> np.dtype:
    """Smallest unsigned dtype holding ``bits``-bit codes (keeps the snapshot ring small)."""
    if bits <= 8:
        return np.dtype(np.uint8)
    if bits <= 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


class _Derived:
    """What an encoding's declaration implies, computed once (read on every capture/encode)."""

    __slots__ = ("code_bits", "code_dtype", "max_codes")

    def __init__(self, code_bits: tuple[int, ...], max_codes: tuple[int, ...]) -> None:
        self.code_bits = code_bits
        self.max_codes = max_codes
        self.code_dtype = _code_dtype(max(code_bits))


class Encoding:
    """Base of field encodings: column shape/dtype and column <-> codes.

    Subclasses are frozen slotted dataclasses that set ``size`` (floats per entity) and
    implement ``_code_bits()`` (bits of each code component) and, when not every code value is
    valid, ``_max_codes()`` (largest valid code of each). The derived properties are computed on
    first use and kept in a slot that is not a dataclass field, so equality, hashing and
    ``repr`` (which the schema fingerprint is built from) see only the declaration.
    """

    __slots__ = ("_derived",)
    size: int
    column_dtype: ClassVar[np.dtype] = np.dtype(np.float32)

    def _code_bits(self) -> tuple[int, ...]:
        raise NotImplementedError

    def _max_codes(self) -> tuple[int, ...]:
        return tuple((1 << b) - 1 for b in self._code_bits())

    def _props(self) -> _Derived:
        try:
            return self._derived
        except AttributeError:  # first use (or a copy made without __post_init__)
            derived = _Derived(self._code_bits(), self._max_codes())
            object.__setattr__(self, "_derived", derived)  # frozen: a cache, not state
            return derived

    @property
    def code_bits(self) -> tuple[int, ...]:
        return self._props().code_bits

    @property
    def max_codes(self) -> tuple[int, ...]:
        return self._props().max_codes

    @property
    def code_dtype(self) -> np.dtype:
        return self._props().code_dtype

    def column_shape(self, n: int) -> tuple[int, ...]:
        return (n,) if self.size == 1 else (n, self.size)

    def quantize(self, column: np.ndarray) -> np.ndarray:
        """Column ``(n,)``/``(n, size)`` -> codes ``(n, k)`` of :attr:`code_dtype`."""
        raise NotImplementedError

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """Codes ``(n, k)`` -> column values of :attr:`column_dtype`, shaped like the column."""
        raise NotImplementedError

    def _shape_out(self, values: np.ndarray) -> np.ndarray:
        return values.reshape(self.column_shape(len(values)))


@dataclass(frozen=True, slots=True)
class Float(Encoding):
    """Unquantized float32, sent as its 32 raw bits (exact, and deltas stay exact)."""

    size: int = 1

    def __post_init__(self) -> None:
        if self.size < 1:
            raise SchemaError("Float size must be >= 1")

    def _code_bits(self) -> tuple[int, ...]:
        return (32,) * self.size

    def quantize(self, column: np.ndarray) -> np.ndarray:
        values = np.ascontiguousarray(column, dtype=np.float32).reshape(-1, self.size)
        return values.view(np.uint32).copy()

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        raw = np.ascontiguousarray(codes, dtype=np.uint32).reshape(-1, self.size)
        return self._shape_out(raw.view(np.float32).copy())


@dataclass(frozen=True, slots=True)
class Quantized(Encoding):
    """A float in ``[lo, hi]`` rounded to multiples of ``step`` from ``lo`` (clamped outside)."""

    lo: float
    hi: float
    step: float
    size: int = 1

    def __post_init__(self) -> None:
        if not (np.isfinite(self.lo) and np.isfinite(self.hi) and self.hi > self.lo):
            raise SchemaError(f"Quantized range must be finite, hi > lo: {self.lo}..{self.hi}")
        if not (np.isfinite(self.step) and self.step > 0) or self.size < 1:
            raise SchemaError("Quantized step must be > 0 and size >= 1")
        if self._max_codes()[0] >= 1 << 32:
            raise SchemaError("Quantized range/step needs more than 32 bits")
        # Idempotence needs float32 rounding error (half an ulp) well below half a step.
        ulp = float(np.spacing(np.float32(max(abs(self.lo), abs(self.hi)))))
        if self.step < 4 * ulp:
            raise SchemaError(f"Quantized step {self.step} is below float32 resolution {ulp}")

    @property
    def max_code(self) -> int:
        return self.max_codes[0]

    def _code_bits(self) -> tuple[int, ...]:
        return (max(1, self._max_codes()[0].bit_length()),) * self.size

    def _max_codes(self) -> tuple[int, ...]:
        return (round((self.hi - self.lo) / self.step),) * self.size

    def quantize(self, column: np.ndarray) -> np.ndarray:
        derived = self._props()
        codes = q.quantize_linear(
            column, self.lo, self.step, derived.max_codes[0], derived.code_dtype
        )
        return codes.reshape(-1, self.size)

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        values = q.dequantize_linear(codes, self.lo, self.step)
        return self._shape_out(values.reshape(-1, self.size))


@dataclass(frozen=True, slots=True)
class Angle(Encoding):
    """An angle in radians, wrapped to ``[-pi, pi)`` in ``2**bits`` steps per turn."""

    bits: int = 12
    size: int = 1

    def __post_init__(self) -> None:
        # Above 20 bits float32 output can no longer tell neighbouring codes apart near pi.
        if not 1 <= self.bits <= 20 or self.size < 1:
            raise SchemaError("Angle bits must be 1..20 and size >= 1")

    def _code_bits(self) -> tuple[int, ...]:
        return (self.bits,) * self.size

    def quantize(self, column: np.ndarray) -> np.ndarray:
        return q.quantize_angle(column, self.bits, self.code_dtype).reshape(-1, self.size)

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        return self._shape_out(q.dequantize_angle(codes, self.bits).reshape(-1, self.size))


@dataclass(frozen=True, slots=True)
class Quaternion(Encoding):
    """A rotation x,y,z,w as smallest three: 2-bit index + 3 components of ``bits`` each."""

    bits: int = 9
    size: int = 4

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 20 or self.size != 4:
            raise SchemaError("Quaternion bits must be 2..20 (size is always 4)")

    def _code_bits(self) -> tuple[int, ...]:
        return (2, self.bits, self.bits, self.bits)

    def _max_codes(self) -> tuple[int, ...]:
        top = (1 << self.bits) - 2  # see astranet.ecs.quantize._quat_max_code
        return (3, top, top, top)

    def quantize(self, column: np.ndarray) -> np.ndarray:
        return q.quantize_quaternion(column, self.bits).astype(self.code_dtype)

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        return q.dequantize_quaternion(codes, self.bits)


@dataclass(frozen=True, slots=True)
class Bool(Encoding):
    """A flag sent as one bit; the column dtype is bool."""

    size: int = 1
    column_dtype: ClassVar[np.dtype] = np.dtype(np.bool_)

    def _code_bits(self) -> tuple[int, ...]:
        return (1,) * self.size

    def quantize(self, column: np.ndarray) -> np.ndarray:
        return np.asarray(column).reshape(-1, self.size).astype(bool).view(np.uint8)

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        return self._shape_out(np.asarray(codes).reshape(-1, self.size) != 0)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One replicated column: ``name`` is ``"Component.field"``."""

    name: str
    encoding: Encoding


C = TypeVar("C", bound=type)


def replicated(cls: C) -> C:
    """Class decorator: mark ``cls`` as a replicated component; its encoding attributes are fields.

    Field order is declaration order, and it is part of the wire format (see
    docs/protocol.md, "Snapshot payload"), so server and client must import the same declarations.
    """
    fields = tuple(
        FieldSpec(f"{cls.__name__}.{attr}", value)
        for attr, value in vars(cls).items()
        if isinstance(value, Encoding)
    )
    if not fields:
        raise SchemaError(f"replicated component {cls.__name__} declares no encoded fields")
    cls.__replicated_fields__ = fields  # type: ignore[attr-defined]
    return cls


def _describe_field(name: str, encoding: Encoding) -> dict[str, Any]:
    declared = dataclasses.fields(encoding) if dataclasses.is_dataclass(encoding) else ()
    params = {p.name: getattr(encoding, p.name) for p in declared}
    return {
        **params,
        "name": name,
        "encoding": type(encoding).__name__,
        "code_bits": list(encoding.code_bits),
        "max_codes": list(encoding.max_codes),
    }


class Schema:
    """The ordered list of replicated fields of a game, shared by server and client.

    ``fingerprint`` is the CRC32 (u32) of :meth:`canonical_json`, the canonical JSON of
    :meth:`describe`. It travels in every payload header, in ``Hello`` and ``JoinAccepted``
    and is what ``GET /schema`` serves, so a client built against other declarations is refused
    at join with ``schema_mismatch`` instead of decoding garbage (docs/protocol.md).
    """

    __slots__ = ("_canonical", "_index", "fields", "fingerprint")

    def __init__(self, *components: type) -> None:
        fields: list[FieldSpec] = []
        for comp in components:
            declared: Any = getattr(comp, "__replicated_fields__", None)
            if declared is None:
                raise SchemaError(f"{comp!r} is not decorated with @replicated")
            fields.extend(declared)
        if not fields or len(fields) > MAX_FIELDS:
            raise SchemaError(f"a schema needs 1..{MAX_FIELDS} fields, got {len(fields)}")
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise SchemaError(f"duplicate replicated field names in {names}")
        self.fields: tuple[FieldSpec, ...] = tuple(fields)
        self._index = {f.name: i for i, f in enumerate(fields)}
        self._canonical = canonical_json(self.describe())
        self.fingerprint: int = zlib.crc32(self._canonical)

    def __len__(self) -> int:
        return len(self.fields)

    def __repr__(self) -> str:
        return f"Schema({', '.join(f.name for f in self.fields)})"

    def describe(self) -> dict[str, Any]:
        """The schema as JSON-able data: components in order, each with its fields in order.

        Each field: ``name``, ``encoding`` (the class name), the encoding's parameters
        (``lo``/``hi``/``step``/``bits``/``size``), ``code_bits`` (width of each code
        component) and ``max_codes`` (largest valid code of each). ``format`` versions this
        layout.
        """
        components: list[dict[str, Any]] = []
        for spec in self.fields:
            component, _, field_name = spec.name.partition(".")
            if not components or components[-1]["name"] != component:
                components.append({"name": component, "fields": []})
            components[-1]["fields"].append(_describe_field(field_name, spec.encoding))
        return {"format": 1, "components": components}

    def canonical_json(self) -> bytes:
        """:meth:`describe` as canonical JSON (sorted keys, no spaces; see ecs.canonical)."""
        return self._canonical

    def index(self, name: str) -> int:
        """Position of field ``name``; raises :class:`SchemaError` for an unknown name."""
        try:
            return self._index[name]
        except KeyError:
            raise SchemaError(f"no replicated field {name!r} in {self!r}") from None

    def quantize(self, columns: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        """Columns (schema order) -> code arrays (schema order)."""
        return tuple(f.encoding.quantize(c) for f, c in zip(self.fields, columns, strict=True))

    def dequantize(self, codes: tuple[np.ndarray, ...]) -> list[np.ndarray]:
        """Code arrays (schema order) -> column values (schema order)."""
        return [f.encoding.dequantize(c) for f, c in zip(self.fields, codes, strict=True)]
