"""The source interface every bar feed implements, and a source over an in-memory frame.

A *source* turns some upstream (a file shipped in a package, a landing folder, a generator, a vendor's live feed)
into the canonical bar frame of :mod:`pasar.market.frames` for a half-open time window ``[start, end)``.

Plugging in a live vendor feed means writing a class that satisfies :class:`Source`:

* ``name`` is a short, stable identifier (``"bundled"``, ``"landing"``, ``"vendor_x"``); the loader stores it with
  every bar as its provenance.
* ``fetch(start, end)`` returns the bars whose start ``ts`` satisfies ``start <= ts < end`` as a frame that went
  through :func:`~pasar.market.frames.conform` (columns, dtypes and order of ``BAR_SCHEMA``; ``ts`` in UTC).
* ``fetch`` must be **idempotent for a window**: asking twice for the same closed window returns the same rows, so
  that re-materializing a partition gives the same bars. A live connector therefore returns only *completed*
  bars (never the bar still forming) and de-duplicates what the vendor sends twice.
* ``start`` and ``end`` are timezone-aware datetimes (any zone; compared in UTC). Naive datetimes are refused.
* Tests never touch the network: a connector takes its transport (client, session, callable) as a constructor
  argument so tests can pass a fake, or tests use :class:`StaticSource`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import polars as pl

from pasar.market.frames import conform

__all__ = ["Source", "StaticSource", "filter_window", "validate_window"]


@runtime_checkable
class Source(Protocol):
    """A provider of canonical bars for a time window (see the module docstring for the contract)."""

    @property
    def name(self) -> str:
        """Short, stable identifier recorded as the bars' provenance."""
        ...

    def fetch(self, start: datetime, end: datetime) -> pl.DataFrame:
        """The conform()ed bars with ``start <= ts < end``; the same rows every time for the same closed window."""
        ...


def validate_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """Both bounds converted to UTC; ValueError if either is naive or the window runs backwards."""
    for label, value in (("start", start), ("end", end)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{label} must be a timezone-aware datetime, got naive {value.isoformat()}")
    start_utc, end_utc = start.astimezone(UTC), end.astimezone(UTC)
    if end_utc < start_utc:
        raise ValueError(f"window ends before it starts: [{start_utc.isoformat()}, {end_utc.isoformat()})")
    return start_utc, end_utc


def filter_window(frame: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    """The rows of a canonical frame with ``start <= ts < end`` (bounds must be timezone-aware)."""
    start_utc, end_utc = validate_window(start, end)
    ts_type = pl.Datetime("us", "UTC")
    return frame.filter(
        (pl.col("ts") >= pl.lit(start_utc, dtype=ts_type)) & (pl.col("ts") < pl.lit(end_utc, dtype=ts_type))
    )


class StaticSource:
    """A :class:`Source` over a frame held in memory (conform()ed and sorted by symbol and ts once, up front)."""

    def __init__(self, frame: pl.DataFrame, name: str = "static") -> None:
        if not name:
            raise ValueError("a source needs a non-empty name")
        self._name = name
        self._frame = conform(frame).sort("symbol", "timeframe", "ts")

    @property
    def name(self) -> str:
        return self._name

    @property
    def frame(self) -> pl.DataFrame:
        """All the bars this source holds."""
        return self._frame

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted(self._frame["symbol"].unique().to_list()))

    def fetch(self, start: datetime, end: datetime) -> pl.DataFrame:
        return filter_window(self._frame, start, end)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r}, rows={self._frame.height})"
