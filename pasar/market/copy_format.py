"""PostgreSQL's binary COPY format, built in one vectorised step per batch.

Every column is written at a fixed width, so a whole batch is one numpy structured array in network byte order:
no Python loop per row, no per-value dumper. A ``numeric`` is (ndigits, weight, sign, dscale, base-10000 digits);
every value here is written with the same 7 digits — 5 for the integer part (an int64 has at most 19 decimal digits)
and 2 for up to 8 decimals, weight 4 — and the server's ``numeric_recv`` strips the zero digits, so what is stored
is exactly what ``'123.45'::numeric`` would store. A ``text`` column needs values of one length per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)
# Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC).
PG_EPOCH_OFFSET_US = 946_684_800_000_000
MAX_NUMERIC_SCALE = 8

IntArray = npt.NDArray[np.int64]
ColumnKind = Literal["int2", "int4", "int8", "timestamptz", "bool", "numeric", "text"]

_FIXED = {"int2": ">i2", "int4": ">i4", "int8": ">i8", "timestamptz": ">i8", "bool": ">i1"}
_NUMERIC_DIGITS = 7
_NUMERIC_WEIGHT = 4
_NUMERIC_NEG = 0x4000
_POW10 = np.array([10**k for k in range(19)], dtype=np.uint64)


@dataclass(frozen=True)
class BinaryColumn:
    """One COPY column. numeric: ``values`` are integers × 10^-``scale`` shown with ``dscale`` decimals;
    text: a numpy bytes array whose items all have the same length; timestamptz: Unix microseconds."""

    name: str
    kind: ColumnKind
    values: npt.NDArray[Any]
    scale: IntArray | int = 0
    dscale: IntArray | int = 0


def encode_binary(columns: Sequence[BinaryColumn]) -> bytes:
    """A whole COPY BINARY payload of ``columns`` (in table order)."""
    return HEADER + encode_tuples(columns) + TRAILER


def encode_tuples(columns: Sequence[BinaryColumn]) -> bytes:
    """The tuples of a COPY BINARY payload, without header or trailer (so a COPY can be streamed in chunks)."""
    if not columns:
        raise ValueError("no columns")
    rows = len(columns[0].values)
    record = np.empty(rows, dtype=np.dtype([("count", ">i2"), *(f for c in columns for f in _fields(c))]))
    record["count"] = len(columns)
    for column in columns:
        if len(column.values) != rows:
            raise ValueError(f"column {column.name} has {len(column.values)} values, expected {rows}")
        if column.kind == "numeric":
            _fill_numeric(record, column)
            continue
        width = column.values.dtype.itemsize if column.kind == "text" else int(_FIXED[column.kind][-1])
        record[f"{column.name}__len"] = width
        values = column.values
        record[column.name] = values - PG_EPOCH_OFFSET_US if column.kind == "timestamptz" else values
    return record.tobytes()


def fixed_width_text(values: Sequence[str]) -> npt.NDArray[np.bytes_]:
    """A text column for the encoder; raises ValueError unless every value has the same length in UTF-8."""
    encoded = np.array([value.encode() for value in values], dtype=np.bytes_)
    if len({len(value) for value in encoded.tolist()}) > 1:
        raise ValueError("the fixed-width encoder needs text values of one length")
    return encoded


def trimmed_dscale(scaled: IntArray, scale: int) -> IntArray:
    """Per value, the fewest decimals that show ``scaled`` × 10^-``scale`` exactly (what ``trim_scale`` keeps)."""
    dscale = np.full(len(scaled), scale, dtype=np.int64)
    for zeros in range(1, scale + 1):
        dscale[scaled % 10**zeros == 0] = scale - zeros
    return dscale


def _fields(column: BinaryColumn) -> list[tuple[Any, ...]]:
    name = column.name
    if column.kind == "numeric":
        return [
            (f"{name}__len", ">i4"),
            (f"{name}__ndigits", ">i2"),
            (f"{name}__weight", ">i2"),
            (f"{name}__sign", ">u2"),
            (f"{name}__dscale", ">u2"),
            (name, ">i2", (_NUMERIC_DIGITS,)),
        ]
    if column.kind == "text" and column.values.dtype.kind != "S":
        raise ValueError(f"{name}: a text column must be a numpy bytes array (see fixed_width_text)")
    code = column.values.dtype.str[1:] if column.kind == "text" else _FIXED[column.kind]
    return [(f"{name}__len", ">i4"), (name, code)]


def _fill_numeric(record: npt.NDArray[np.void], column: BinaryColumn) -> None:
    scaled = column.values.astype(np.int64)
    magnitude = np.abs(scaled).astype(np.uint64)
    scale = np.broadcast_to(np.asarray(column.scale, dtype=np.int64), scaled.shape)
    if scale.min(initial=0) < 0 or scale.max(initial=0) > MAX_NUMERIC_SCALE:
        raise ValueError(f"{column.name}: scales must be in 0..{MAX_NUMERIC_SCALE}")
    unit = _POW10[scale]
    whole, fraction = magnitude // unit, (magnitude % unit) * _POW10[MAX_NUMERIC_SCALE - scale]
    digits = record[column.name]
    digits[:, 5], digits[:, 6] = fraction // 10_000, fraction % 10_000
    for position in range(4, -1, -1):
        digits[:, position] = whole % 10_000
        whole //= 10_000
    record[f"{column.name}__len"] = 8 + 2 * _NUMERIC_DIGITS
    record[f"{column.name}__ndigits"] = _NUMERIC_DIGITS
    record[f"{column.name}__weight"] = _NUMERIC_WEIGHT
    record[f"{column.name}__sign"] = np.where(scaled < 0, _NUMERIC_NEG, 0)
    record[f"{column.name}__dscale"] = column.dscale
