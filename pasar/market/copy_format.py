"""PostgreSQL's binary COPY format for fixed-width rows, built in one vectorised step.

Every staged column is fixed width (int2/int4/int8/bool/timestamptz), so a whole batch is one numpy structured
array in network byte order: no Python loop per row, no per-value dumper.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)
# Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC).
PG_EPOCH_OFFSET_US = 946_684_800_000_000

_WIDTH = {"int2": ("i2", 2), "int4": ("i4", 4), "int8": ("i8", 8), "timestamptz": ("i8", 8), "bool": ("i1", 1)}


def encode_rows(columns: Sequence[tuple[str, str, npt.NDArray[np.generic]]]) -> bytes:
    """``columns`` is ``(name, pg_type, values)`` in table order; timestamptz values are Unix microseconds."""
    if not columns:
        raise ValueError("no columns")
    rows = len(columns[0][2])
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for name, pg_type, _ in columns:
        code, _width = _WIDTH[pg_type]
        fields += [(f"{name}__len", ">i4"), (name, f">{code}")]
    record = np.empty(rows, dtype=np.dtype(fields))
    record["count"] = len(columns)
    for name, pg_type, values in columns:
        if len(values) != rows:
            raise ValueError(f"column {name} has {len(values)} values, expected {rows}")
        record[f"{name}__len"] = _WIDTH[pg_type][1]
        record[name] = values - PG_EPOCH_OFFSET_US if pg_type == "timestamptz" else values
    return HEADER + record.tobytes() + TRAILER
