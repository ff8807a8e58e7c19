"""Checkpoint codec: a room's replicated state (``dict[str, np.ndarray]``) + tick <-> bytes.

Layout (all integers little-endian; full description in ``docs/storage.md``)::

    offset size  field
    0      4     magic  b"ANCK"
    4      2     format version (u16), currently 1
    6      2     flags (u16), must be 0 in v1
    8      8     tick (u64)
    16     4     body length in bytes (u32)
    20     4     CRC-32 of bytes [0, 20) followed by the body
    24     ...   body: msgpack array of [name, dtype, shape, raw bytes] entries

``dtype`` is either a whitelisted type string (``"<f4"``, ``"|b1"``, ...) or, for a
structured dtype, a map ``{"names", "formats", "offsets", "itemsize"}`` whose formats are
themselves whitelisted type strings. ``np.dtype`` is only ever called on whitelisted
strings, so an object (``O``) dtype can never be built from a blob. No pickle.

Goals: exact round trip (same names, dtypes, shapes and bytes, NaNs included); decode is
O(bytes) with one copy per array; every corruption (truncation, bit flip, bad field) gives
:class:`astranet.errors.StorageError`, never another exception. The CRC covers the header
too, so any single flipped bit anywhere is detected.

Limits: MAX_CHECKPOINT_BYTES, MAX_ARRAYS, MAX_NAME_CHARS, MAX_STRUCT_FIELDS below; arrays
are 1-D or 2-D; little-endian (or single-byte) numeric and bool types only, structured
fields must be scalar (no nested or sub-array fields).
Benchmark: none committed (storage owns no ``benchmarks/`` path); see ``docs/storage.md``
for the measured encode/decode speed and the command that produced it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np

from astranet.errors import StorageError

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "CHECKPOINT_MAGIC",
    "MAX_CHECKPOINT_BYTES",
    "decode_checkpoint",
    "encode_checkpoint",
]

CHECKPOINT_MAGIC = b"ANCK"
CHECKPOINT_FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sHHQII")  # magic, version, flags, tick, body_len, crc32
HEADER_BYTES = _HEADER.size  # 24
_CRC_COVERED_HEADER_BYTES = HEADER_BYTES - 4  # everything before the crc field itself

# A room's state is tens of KiB (hundreds of entities x tens of bytes); 64 MiB leaves two
# orders of magnitude of headroom while keeping a corrupt length from allocating GiBs.
MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024
# Components are columns; a game with more than 1024 replicated columns is a bug.
MAX_ARRAYS = 1024
MAX_NAME_CHARS = 256
MAX_STRUCT_FIELDS = 256
MAX_TICK = 2**64 - 1

# Type strings accepted for plain arrays and structured fields: numeric and bool only,
# explicit little-endian ("<") or byte-order-free ("|") so a file reads the same anywhere.
_ALLOWED_TYPESTRS = frozenset(
    ["|b1", "|i1", "|u1"]
    + [f"<{kind}{size}" for kind in "iu" for size in (2, 4, 8)]
    + ["<f2", "<f4", "<f8"]
)


def _dtype_to_wire(dtype: np.dtype) -> str | dict[str, Any]:
    """Describe ``dtype`` as a whitelisted string or a structured-dtype map."""
    if dtype.fields is None:
        if dtype.str not in _ALLOWED_TYPESTRS:
            raise StorageError(
                f"cannot checkpoint dtype {dtype.str!r}: only little-endian numeric/bool types"
            )
        return dtype.str
    names = list(dtype.names or ())
    formats: list[str] = []
    offsets: list[int] = []
    for name in names:
        field_dtype, offset = dtype.fields[name][:2]
        if field_dtype.fields is not None or field_dtype.str not in _ALLOWED_TYPESTRS:
            raise StorageError(
                f"cannot checkpoint structured field {name!r} of dtype {field_dtype.str!r}"
            )
        formats.append(field_dtype.str)
        offsets.append(offset)
    return {"names": names, "formats": formats, "offsets": offsets, "itemsize": dtype.itemsize}


def _dtype_from_wire(spec: object) -> np.dtype:
    """Rebuild a dtype from its wire description, trusting nothing."""
    if isinstance(spec, str):
        if spec not in _ALLOWED_TYPESTRS:
            raise StorageError(f"corrupt checkpoint: dtype {spec!r} is not allowed")
        return np.dtype(spec)
    if not isinstance(spec, dict) or set(spec) != {"names", "formats", "offsets", "itemsize"}:
        raise StorageError("corrupt checkpoint: malformed dtype description")
    names, formats = spec["names"], spec["formats"]
    offsets, itemsize = spec["offsets"], spec["itemsize"]
    if not (
        isinstance(names, list)
        and isinstance(formats, list)
        and isinstance(offsets, list)
        and 0 < len(names) == len(formats) == len(offsets) <= MAX_STRUCT_FIELDS
        and all(isinstance(n, str) and 0 < len(n) <= MAX_NAME_CHARS for n in names)
        and len(set(names)) == len(names)
        and all(isinstance(f, str) and f in _ALLOWED_TYPESTRS for f in formats)
        and isinstance(itemsize, int)
        and 0 < itemsize <= MAX_CHECKPOINT_BYTES
        and all(isinstance(o, int) and o >= 0 for o in offsets)
    ):
        raise StorageError("corrupt checkpoint: invalid structured dtype fields")
    field_sizes = [np.dtype(f).itemsize for f in formats]
    if any(o + s > itemsize for o, s in zip(offsets, field_sizes, strict=True)):
        raise StorageError("corrupt checkpoint: structured field lies outside its itemsize")
    try:
        return np.dtype(
            {"names": names, "formats": formats, "offsets": offsets, "itemsize": itemsize}
        )
    except (TypeError, ValueError) as exc:  # e.g. overlapping fields numpy refuses
        raise StorageError(f"corrupt checkpoint: invalid structured dtype ({exc})") from exc


def encode_checkpoint(tick: int, state: Mapping[str, np.ndarray]) -> bytes:
    """Serialise ``state`` at ``tick``; raises StorageError for what the format can't hold."""
    if not isinstance(tick, int) or not 0 <= tick <= MAX_TICK:
        raise StorageError(f"checkpoint tick must be a u64, got {tick!r}")
    if len(state) > MAX_ARRAYS:
        raise StorageError(f"checkpoint has {len(state)} arrays; the limit is {MAX_ARRAYS}")
    entries: list[list[Any]] = []
    for name, array in state.items():
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
            raise StorageError(f"checkpoint array name must be 1-{MAX_NAME_CHARS} chars: {name!r}")
        if not isinstance(array, np.ndarray) or array.ndim not in (1, 2):
            raise StorageError(f"checkpoint array {name!r} must be a 1-D or 2-D numpy array")
        entries.append([name, _dtype_to_wire(array.dtype), list(array.shape), array.tobytes()])
    body = msgpack.packb(entries, use_bin_type=True)
    if HEADER_BYTES + len(body) > MAX_CHECKPOINT_BYTES:
        raise StorageError(
            f"checkpoint of {len(body)} bytes exceeds MAX_CHECKPOINT_BYTES ({MAX_CHECKPOINT_BYTES})"
        )
    head = _HEADER.pack(CHECKPOINT_MAGIC, CHECKPOINT_FORMAT_VERSION, 0, tick, len(body), 0)
    crc = zlib.crc32(body, zlib.crc32(head[:_CRC_COVERED_HEADER_BYTES]))
    return head[:_CRC_COVERED_HEADER_BYTES] + struct.pack("<I", crc) + body


def _check_header(blob: bytes) -> tuple[int, memoryview]:
    """Validate the fixed header and CRC; return (tick, body)."""
    if len(blob) < HEADER_BYTES:
        raise StorageError(f"corrupt checkpoint: {len(blob)} bytes is shorter than the header")
    if len(blob) > MAX_CHECKPOINT_BYTES:
        raise StorageError(f"checkpoint of {len(blob)} bytes exceeds MAX_CHECKPOINT_BYTES")
    magic, version, flags, tick, body_len, crc = _HEADER.unpack_from(blob)
    if magic != CHECKPOINT_MAGIC:
        raise StorageError(f"not an astranet checkpoint (magic {magic!r})")
    if version > CHECKPOINT_FORMAT_VERSION:
        raise StorageError(
            f"checkpoint format v{version} is newer than this server supports "
            f"(v{CHECKPOINT_FORMAT_VERSION})"
        )
    if version == 0 or flags != 0:
        raise StorageError(f"corrupt checkpoint: version {version}, flags {flags:#x}")
    found_len = len(blob) - HEADER_BYTES
    if body_len != found_len:
        raise StorageError(
            f"corrupt checkpoint: header says {body_len} body bytes, found {found_len}"
        )
    view = memoryview(blob)
    body = view[HEADER_BYTES:]
    if zlib.crc32(body, zlib.crc32(view[:_CRC_COVERED_HEADER_BYTES])) != crc:
        raise StorageError("corrupt checkpoint: CRC-32 mismatch")
    return tick, body


def _decode_entry(entry: object) -> tuple[str, np.ndarray]:
    if not (isinstance(entry, list) and len(entry) == 4):
        raise StorageError("corrupt checkpoint: array entry is not [name, dtype, shape, data]")
    name, dtype_spec, shape, data = entry
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
        raise StorageError("corrupt checkpoint: bad array name")
    dtype = _dtype_from_wire(dtype_spec)
    if not (
        isinstance(shape, list)
        and len(shape) in (1, 2)
        and all(isinstance(n, int) and 0 <= n <= MAX_CHECKPOINT_BYTES for n in shape)
    ):
        raise StorageError(f"corrupt checkpoint: bad shape for array {name!r}")
    if not isinstance(data, bytes):
        raise StorageError(f"corrupt checkpoint: data of array {name!r} is not bytes")
    # Python ints: no overflow, and each dimension is already capped above.
    expected = dtype.itemsize * shape[0] * (shape[1] if len(shape) == 2 else 1)
    if expected != len(data):
        raise StorageError(
            f"corrupt checkpoint: array {name!r} has {len(data)} bytes, "
            f"shape {shape} x itemsize {dtype.itemsize} needs {expected}"
        )
    # bytearray: one copy, writable, not pinning the blob, and (unlike ndarray.copy() of a
    # structured dtype) it keeps padding bytes, so the round trip is byte-exact.
    return name, np.frombuffer(bytearray(data), dtype=dtype).reshape(shape)


def decode_checkpoint(blob: bytes) -> tuple[int, dict[str, np.ndarray]]:
    """Parse a blob from :func:`encode_checkpoint`; raises StorageError on any defect."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise StorageError(f"checkpoint must be bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    tick, body = _check_header(blob)
    try:
        entries = msgpack.unpackb(
            body,
            raw=False,
            use_list=True,
            strict_map_key=True,
        )
    # ValueError covers ExtraData, FormatError and StackError; the body is already capped.
    except (ValueError, msgpack.UnpackException) as exc:
        raise StorageError(f"corrupt checkpoint: body is not valid msgpack ({exc})") from exc
    if not isinstance(entries, list) or len(entries) > MAX_ARRAYS:
        raise StorageError("corrupt checkpoint: body is not a bounded list of arrays")
    state: dict[str, np.ndarray] = {}
    for entry in entries:
        name, array = _decode_entry(entry)
        if name in state:
            raise StorageError(f"corrupt checkpoint: array {name!r} appears twice")
        state[name] = array
    return tick, state
