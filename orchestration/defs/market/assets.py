"""Market data assets: each parses its config and partition, calls one function of
:mod:`pasar.market.service` (one transaction per partition or file), then reports what is stored and checks it."""

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import psycopg

from orchestration import partitions
from orchestration.defs.market import checks
from orchestration.resources import PasarDatabase
from pasar.market import quality, service
from pasar.market.frames import Timeframe
from pasar.market.quality import BarSlice
from pasar.market.sources.synthetic import SyntheticSource

GROUP = "market"
RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL)
PREVIEW_ROWS = 5

AssetEvents = Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult]


# Metadata ----------------------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """A GitHub-flavoured markdown table of ``rows`` (the keys of the first row are the columns)."""
    if not rows:
        return "_no rows_"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_cell(row[column]) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def report_slice(report: service.LoadReport) -> BarSlice | None:
    """The stored bars a load wrote: its symbols and source from its first to its last bar (None if empty)."""
    if report.start is None or report.end is None:
        return None
    return BarSlice(tuple(report.symbols), report.start, report.end + timedelta(microseconds=1), source=report.source)


def bars_metadata(
    conn: psycopg.Connection[Any], slices: Sequence[BarSlice], *, rows_in: int, rows_written: int
) -> dict[str, dg.MetadataValue[Any]]:
    """Row counts, time range, symbols, a checksum and a preview of the stored bars of ``slices``."""
    summaries = [quality.slice_summary(conn, bars) for bars in slices]
    firsts = [summary.first_ts for summary in summaries if summary.first_ts is not None]
    lasts = [summary.last_ts for summary in summaries if summary.last_ts is not None]
    digests = [summary.digest or "" for summary in summaries]
    preview = next((rows for bars in slices if (rows := quality.preview(conn, bars, PREVIEW_ROWS))), [])
    return {
        "rows": dg.MetadataValue.int(sum(summary.rows for summary in summaries)),
        "rows_in": dg.MetadataValue.int(rows_in),
        "rows_written": dg.MetadataValue.int(rows_written),
        "first_ts": dg.MetadataValue.timestamp(min(firsts)) if firsts else dg.MetadataValue.null(),
        "last_ts": dg.MetadataValue.timestamp(max(lasts)) if lasts else dg.MetadataValue.null(),
        "symbols": dg.MetadataValue.json(sorted({symbol for summary in summaries for symbol in summary.symbols})),
        "timeframes": dg.MetadataValue.json(sorted({tf for summary in summaries for tf in summary.timeframes})),
        "checksum": dg.MetadataValue.text(
            digests[0]
            if len(digests) == 1
            else hashlib.md5("|".join(digests).encode(), usedforsecurity=False).hexdigest()
        ),
        "preview": dg.MetadataValue.md(markdown_table(preview)),
    }


def _series(conn: psycopg.Connection[Any], slices: Sequence[BarSlice]) -> list[tuple[str, str]]:
    """(symbol, timeframe) of every stored series in ``slices``."""
    return sorted({(symbol, timeframe) for bars in slices for symbol, _, timeframe in quality.bar_times(conn, bars)})


# Assets ------------------------------------------------------------------------------------------------------------


@dg.asset(
    group_name=GROUP,
    retry_policy=RETRY,
    check_specs=checks.specs("instruments", checks.REFERENCE_COMPLETE),
    kinds={"postgres"},
    description="market.instruments and market.holidays: the shipped IDX list and rules plus the bundled "
    "instruments (upserted, idempotent).",
)
def instruments(database: PasarDatabase) -> AssetEvents:
    with database.connect() as conn:
        counts = service.sync_reference_data(conn)
        yield dg.MaterializeResult(
            metadata={
                "instruments": dg.MetadataValue.int(counts["instruments"]),
                "holidays": dg.MetadataValue.int(counts["holidays"]),
            }
        )
        yield checks.reference_complete(conn)


@dg.asset(
    group_name=GROUP,
    partitions_def=partitions.bundled_symbols,
    deps=[instruments],
    retry_policy=RETRY,
    check_specs=checks.specs(
        "bundled_bars", checks.OHLC_SANITY, checks.NO_DUPLICATES, checks.CALENDAR_GAPS, checks.FRESHNESS
    ),
    kinds={"postgres", "polars"},
    description="Real historical bars shipped by the backtesting package, one symbol per partition, as is.",
)
def bundled_bars(context: dg.AssetExecutionContext, database: PasarDatabase) -> AssetEvents:
    symbol = context.partition_key
    with database.connect() as conn:
        reports = service.ingest_bundled(conn, [symbol])
        slices = [bars for report in reports if (bars := report_slice(report)) is not None]
        yield dg.MaterializeResult(
            metadata=bars_metadata(
                conn,
                slices,
                rows_in=sum(report.rows_in for report in reports),
                rows_written=sum(report.rows_written for report in reports),
            )
        )
        yield checks.ohlc_sanity(conn, slices)
        yield checks.no_duplicates(conn, slices)
        yield checks.calendar_gaps(conn, slices)
        # Frozen history: fresh means the store holds the source's last bar, not that the bar is recent.
        source_end = max((report.end for report in reports if report.end is not None), default=datetime.now(UTC))
        yield checks.freshness(conn, _series(conn, slices), as_of=source_end, as_of_label="the source's last bar")


class SyntheticConfig(dg.Config):
    """The synthetic IDX market: the first ``symbols`` reference IDX stocks (then made-up codes), one timeframe,
    seeded (the same config gives the same bars for a day)."""

    symbols: int = 30
    timeframe: str = "1m"
    seed: int = 7


@dg.asset(
    group_name=GROUP,
    partitions_def=partitions.synthetic_daily,
    deps=[instruments],
    retry_policy=RETRY,
    check_specs=checks.specs(
        "synthetic_bars", checks.OHLC_SANITY, checks.NO_DUPLICATES, checks.CALENDAR_GAPS, checks.PRICE_JUMPS
    ),
    kinds={"postgres", "polars"},
    description="The seeded synthetic IDX market, one IDX calendar day (WIB) per partition; weekends and "
    "holidays load nothing.",
)
def synthetic_bars(context: dg.AssetExecutionContext, config: SyntheticConfig, database: PasarDatabase) -> AssetEvents:
    window = context.partition_time_window
    source = SyntheticSource(config.symbols, Timeframe(config.timeframe), seed=config.seed)
    frame = source.fetch(window.start, window.end)
    with database.connect() as conn:
        report = service.load_frame(conn, frame, source=source.name)
        day = BarSlice(source.symbols, window.start, window.end, source.timeframe.value, source.name)
        yield dg.MaterializeResult(
            metadata={
                **bars_metadata(conn, [day], rows_in=report.rows_in, rows_written=report.rows_written),
                "config": dg.MetadataValue.json(config.model_dump()),
            }
        )
        frame_duplicates = frame.select(pl.struct("symbol", "timeframe", "ts").is_duplicated().sum()).item()
        yield checks.ohlc_sanity(conn, [day])
        yield checks.no_duplicates(conn, [day], frame_duplicates=int(frame_duplicates))
        yield checks.calendar_gaps(conn, [day])
        yield checks.price_jumps(conn, [day])


@dg.asset(
    group_name=GROUP,
    deps=[instruments],
    retry_policy=RETRY,
    check_specs=checks.specs(
        "landing_bars",
        checks.OHLC_SANITY,
        checks.NO_DUPLICATES,
        checks.CALENDAR_GAPS,
        checks.FRESHNESS,
        checks.PRICE_JUMPS,
    ),
    kinds={"postgres", "polars", "csv", "parquet"},
    description="CSV and Parquet files dropped in PASAR_HOME/landing: each loaded whole (one transaction) and "
    "moved to processed/, or moved to rejected/ beside a .reason.txt.",
)
def landing_bars(database: PasarDatabase) -> AssetEvents:
    with database.connect() as conn:
        report = service.ingest_landing(conn, Path(database.home))
        loaded = [service.LoadReport(**_report_fields(entry)) for entry in report.loaded]
        slices = [bars for entry in loaded if (bars := report_slice(entry)) is not None]
        yield dg.MaterializeResult(
            metadata={
                **bars_metadata(
                    conn,
                    slices,
                    rows_in=report.rows_loaded,
                    rows_written=sum(entry.rows_written for entry in loaded),
                ),
                "files_loaded": dg.MetadataValue.int(len(report.loaded)),
                "files_rejected": dg.MetadataValue.int(len(report.rejected)),
                "loaded": dg.MetadataValue.json(
                    [
                        {
                            "file": entry["file"],
                            "rows": entry["rows_in"],
                            "symbols": entry["symbols"],
                            "duplicates_dropped": entry["duplicates_dropped"],
                            "new_instruments": entry["new_instruments"],
                        }
                        for entry in report.loaded
                    ]
                ),
                "rejected": dg.MetadataValue.json(report.rejected),
            }
        )
        yield checks.ohlc_sanity(conn, slices)
        yield checks.no_duplicates(conn, slices)
        yield checks.calendar_gaps(conn, slices)
        yield checks.freshness(conn, _series(conn, slices), as_of=datetime.now(UTC), as_of_label="now")
        yield checks.price_jumps(conn, slices)


def _report_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """The LoadReport fields of a LandingReport ``loaded`` entry (which adds the file name and duplicates)."""
    names = {field.name for field in dataclasses.fields(service.LoadReport)}
    return {key: value for key, value in entry.items() if key in names}
