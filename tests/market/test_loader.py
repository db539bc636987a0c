"""The bulk loader against the real database: exact values, idempotent merges, all-or-nothing loads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psycopg
import pytest

from pasar.db.urls import DatabaseUrls
from pasar.market import repository, service
from pasar.market.copy_format import BinaryColumn, encode_binary, fixed_width_text, trimmed_dscale
from pasar.market.frames import BarFrameError, Timeframe, conform
from pasar.market.sources.synthetic import SyntheticSource


@pytest.fixture
def etl(urls: DatabaseUrls) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(urls.etl, autocommit=True) as conn:
        service.sync_reference_data(conn)
        yield conn


def _frame(symbol: str, rows: list[tuple[datetime, float, float, float, float, float]], tf: str = "1d") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": [symbol] * len(rows),
            "timeframe": [tf] * len(rows),
            "ts": [row[0] for row in rows],
            "open": [row[1] for row in rows],
            "high": [row[2] for row in rows],
            "low": [row[3] for row in rows],
            "close": [row[4] for row in rows],
            "volume": [row[5] for row in rows],
            "adjusted": [False] * len(rows),
        }
    )


def _checksum(conn: psycopg.Connection[Any], symbol: str) -> tuple[Any, ...]:
    row = conn.execute(
        "select count(*), md5(string_agg(b.ts::text || b.open || b.high || b.low || b.close || b.volume, ',' "
        "order by b.timeframe, b.ts)) from market.bars b join market.instruments i on i.id = b.instrument_id "
        "where i.symbol = %s",
        [symbol],
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_binary_copy_format_is_what_postgres_reads(etl: psycopg.Connection[Any]) -> None:
    assert trimmed_dscale(np.array([1500, 0, 123456789, -10]), 8).tolist() == [6, 0, 8, 7]
    payload = encode_binary(
        [
            BinaryColumn("a", "int4", np.array([1, -7], dtype=np.int32)),
            BinaryColumn("b", "int8", np.array([2**40, 0], dtype=np.int64)),
            BinaryColumn("c", "timestamptz", np.array([0, 1_767_225_600_000_000], dtype=np.int64)),
            BinaryColumn("d", "bool", np.array([1, 0], dtype=np.int8)),
            BinaryColumn("e", "int2", np.array([3, 4], dtype=np.int16)),
            BinaryColumn("f", "text", fixed_width_text(["1m", "1d"])),
            BinaryColumn("g", "numeric", np.array([107219, -5], dtype=np.int64), np.array([5, 0]), np.array([5, 0])),
            BinaryColumn(
                "h",
                "numeric",
                np.array([9_223_372_036_854_775_807, 1500], dtype=np.int64),
                np.array([0, 8]),
                np.array([0, 6]),
            ),
        ]
    )
    with etl.transaction(force_rollback=True):
        etl.execute(
            "create temp table copy_probe (a int4, b int8, c timestamptz, d bool, e int2, f text, g numeric, h numeric)"
        )
        with etl.cursor() as cur, cur.copy("copy copy_probe from stdin (format binary)") as copy:
            copy.write(payload)
        rows = etl.execute("select a, b, c, d, e, f, g::text, h::text from copy_probe order by a").fetchall()
    assert rows == [
        (-7, 0, datetime(2026, 1, 1, tzinfo=UTC), False, 4, "1d", "-5", "0.000015"),
        (1, 2**40, datetime(1970, 1, 1, tzinfo=UTC), True, 3, "1m", "1.07219", "9223372036854775807"),
    ]


def test_the_encoder_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match="one length"):
        fixed_width_text(["1m", "15m"])
    with pytest.raises(ValueError, match=r"scales must be in 0\.\.8"):
        encode_binary([BinaryColumn("x", "numeric", np.array([1]), 9, 9)])
    with pytest.raises(ValueError, match="expected 2"):
        encode_binary([BinaryColumn("x", "int4", np.array([1, 2])), BinaryColumn("y", "int4", np.array([1]))])


def test_prices_are_stored_exactly_at_the_instrument_precision(etl: psycopg.Connection[Any]) -> None:
    ts = datetime(2031, 3, 3, tzinfo=UTC)
    service.load_frame(etl, _frame("EURUSD", [(ts, 1.07219, 1.0730, 1.0701, 1.07294, 1413.5)], tf="1h"), source="t")
    row = etl.execute(
        "select open, high, low, close, volume from market.bars b join market.instruments i on i.id = b.instrument_id "
        "where i.symbol = 'EURUSD' and b.ts = %s",
        [ts],
    ).fetchone()
    assert row == (Decimal("1.07219"), Decimal("1.07300"), Decimal("1.07010"), Decimal("1.07294"), Decimal("1413.5"))


def test_reloading_gives_the_same_rows_and_writes_nothing(etl: psycopg.Connection[Any]) -> None:
    frame = SyntheticSource(3, Timeframe.m1, seed=11).fetch(
        datetime(2026, 2, 2, tzinfo=UTC), datetime(2026, 2, 3, tzinfo=UTC)
    )
    first = service.load_frame(etl, frame, source="synthetic")
    before = _checksum(etl, first.symbols[0])
    again = service.load_frame(etl, frame, source="synthetic")
    assert first.rows_in == again.rows_in > 0
    assert again.rows_written == 0
    assert _checksum(etl, first.symbols[0]) == before


def _mixed_frame() -> pl.DataFrame:
    """Two timeframes of different name lengths, prices at 0 and 5 decimals, fractional and huge volumes."""
    start = datetime(2032, 1, 5, 2, tzinfo=UTC)
    return pl.concat(
        [
            _frame(
                "BBCA",
                [(start + timedelta(minutes=i), 9000 + i, 9025 + i, 8975, 9000, 1e12 + i) for i in range(50)],
                "1m",
            ),
            _frame(
                "EURUSD",
                [(start + timedelta(minutes=15 * i), 1.07219, 1.073, 1.0701, 1.07294, 0.125 * i) for i in range(9)],
                "15m",
            ),
        ],
        how="vertical_relaxed",
    )


def _stored(conn: psycopg.Connection[Any], start: datetime) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select instrument_id, timeframe, ts, open::text, high::text, low::text, close::text, volume::text, "
        "is_adjusted, source from market.bars where ts >= %s order by 1, 2, 3",
        [start],
    ).fetchall()


def test_a_new_range_is_copied_and_stores_exactly_what_the_merge_stores(
    etl: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = conform(_mixed_frame())
    start: datetime = frame["ts"].min()  # type: ignore[assignment]
    service.load_frame(etl, frame.head(1), source="t")  # the instruments and partitions, then rolled-back loads
    etl.execute("delete from market.bars where ts >= %s", [start])
    refs = repository.instrument_refs(etl, ["BBCA", "EURUSD"])
    merges: list[int] = []
    real_merge = repository.stage_and_merge

    def counted_merge(*args: Any, **kwargs: Any) -> repository.MergeResult:
        merges.append(1)
        return real_merge(*args, **kwargs)

    monkeypatch.setattr(repository, "stage_and_merge", counted_merge)
    with etl.transaction(force_rollback=True):
        copied = repository.write_bars(etl, frame, refs, source="t")
        by_copy = _stored(etl, start)
        series = etl.execute(
            "select timeframe, first_ts, last_ts from market.bar_series where instrument_id = %s and timeframe = '15m'",
            [refs["EURUSD"].id],
        ).fetchone()
    assert merges == [] and copied.rows_written == frame.height == len(by_copy) == 59
    assert series == ("15m", start, start + timedelta(minutes=120))
    with etl.transaction(force_rollback=True):
        merged = repository.stage_and_merge(etl, frame, refs, source="t")
        by_merge = _stored(etl, start)
    assert merged.rows_written == frame.height
    assert by_copy == by_merge
    assert by_copy[0][3:8] == ("9000", "9025", "8975", "9000", "1000000000000")
    assert by_copy[-1][3:8] == ("1.07219", "1.07300", "1.07010", "1.07294", "1")


def test_a_load_racing_another_that_committed_first_merges_instead(
    etl: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The range check saw no rows, but a concurrent load committed them before the COPY: the unique violation
    rolls back to the savepoint and the batch is merged, writing nothing twice."""
    frame = conform(_mixed_frame())
    start: datetime = frame["ts"].min()  # type: ignore[assignment]
    service.load_frame(etl, frame, source="t")
    before = _stored(etl, start)
    monkeypatch.setattr(repository, "_range_holds_bars", lambda *args: False)
    again = service.load_frame(etl, frame, source="t")
    assert again.rows_written == 0
    changed = service.load_frame(etl, frame.with_columns(pl.col("volume") + 1), source="t")
    assert changed.rows_written == frame.height
    assert len(_stored(etl, start)) == len(before)


def test_a_bar_written_behind_the_series_index_is_merged_not_duplicated(
    urls: DatabaseUrls, etl: psycopg.Connection[Any]
) -> None:
    """The range check reads market.bar_series first; a row some other writer put in market.bars without it is
    still caught (by the primary key) and the batch merged."""
    ts = datetime(2032, 3, 1, 2, tzinfo=UTC)
    service.load_frame(etl, _frame("PGAS", [(ts, 1500, 1510, 1490, 1500, 100)], "1h"), source="t")
    with psycopg.connect(urls.owner, autocommit=True) as owner:  # the loader itself may only widen the index
        owner.execute("delete from market.bar_series where timeframe = '1h' and first_ts = %s", [ts])
    report = service.load_frame(
        etl,
        _frame(
            "PGAS", [(ts, 1500, 1510, 1490, 1505, 100), (ts + timedelta(hours=1), 1505, 1510, 1500, 1500, 50)], "1h"
        ),
        source="t",
    )
    assert report.rows_written == 2  # one changed, one new
    rows = etl.execute(
        "select ts, close from market.bars b join market.instruments i on i.id = b.instrument_id "
        "where i.symbol = 'PGAS' and b.timeframe = '1h' order by ts"
    ).fetchall()
    assert rows == [(ts, Decimal("1505")), (ts + timedelta(hours=1), Decimal("1500"))]


@pytest.mark.parametrize(
    ("value", "message"),
    [(float("nan"), "NaN or infinite"), (float("inf"), "NaN or infinite"), (None, "missing values in columns: close")],
)
def test_bars_without_a_finite_price_are_refused_whole(etl: psycopg.Connection[Any], value: Any, message: str) -> None:
    ts = datetime(2032, 2, 2, tzinfo=UTC)
    frame = _frame("UNVR", [(ts, 2000, 2010, 1990, 2000, 10), (ts + timedelta(days=1), 2000, 2010, 1990, 2000, 10)])
    frame = frame.with_columns(pl.when(pl.col("ts") > ts).then(value).otherwise(pl.col("close")).alias("close"))
    with pytest.raises(BarFrameError, match=message):
        service.load_frame(etl, frame, source="t")
    stored = etl.execute(
        "select count(*) from market.bars b join market.instruments i on i.id = b.instrument_id "
        "where i.symbol = 'UNVR' and b.ts >= %s",
        [ts],
    ).fetchone()
    assert stored == (0,)


def test_a_changed_bar_is_updated_not_duplicated(etl: psycopg.Connection[Any]) -> None:
    ts = datetime(2031, 4, 1, tzinfo=UTC)
    service.load_frame(etl, _frame("TLKM", [(ts, 3000, 3100, 2990, 3050, 100)]), source="t")
    report = service.load_frame(etl, _frame("TLKM", [(ts, 3000, 3100, 2990, 3060, 200)]), source="t")
    assert report.rows_written == 1
    rows = etl.execute(
        "select close, volume from market.bars b join market.instruments i on i.id = b.instrument_id "
        "where i.symbol = 'TLKM' and b.ts = %s",
        [ts],
    ).fetchall()
    assert rows == [(Decimal("3060"), Decimal("200"))]


def test_unknown_symbols_become_instruments_with_defaults(etl: psycopg.Connection[Any]) -> None:
    ts = datetime(2031, 5, 5, tzinfo=UTC)
    report = service.load_frame(etl, _frame("ZZTQ", [(ts, 100, 110, 95, 105, 1000)]), source="t")
    assert report.new_instruments == ["ZZTQ"]
    row = etl.execute("select exchange, lot_size, origin from market.instruments where symbol = 'ZZTQ'").fetchone()
    assert row == ("IDX", 100, "landing")


def test_a_load_that_fails_midway_leaves_the_previous_rows(etl: psycopg.Connection[Any]) -> None:
    ts = datetime(2031, 6, 2, tzinfo=UTC)
    service.load_frame(etl, _frame("ASII", [(ts, 5000, 5100, 4900, 5050, 100)]), source="t")
    before = _checksum(etl, "ASII")
    # A negative volume passes the frame but violates the table's check: the whole batch must roll back.
    bad = _frame("ASII", [(ts, 5000, 5100, 4900, 5075, 300), (datetime(2031, 6, 3, tzinfo=UTC), 1, 2, 1, 1, -5)])
    with pytest.raises(psycopg.errors.CheckViolation):
        service.load_frame(etl, bad, source="t")
    assert _checksum(etl, "ASII") == before


def test_a_killed_load_leaves_nothing_half_written(urls: DatabaseUrls, etl: psycopg.Connection[Any]) -> None:
    """SIGKILL the loading process after its merge ran but before it committed: nothing of it is visible."""
    day = date(2026, 2, 4)
    script = textwrap.dedent(
        f"""
        import sys, time, psycopg
        from datetime import datetime, UTC
        from pasar.market import repository, service
        from pasar.market.frames import Timeframe, conform
        from pasar.market.sources.synthetic import SyntheticSource
        frame = conform(SyntheticSource(5, Timeframe.m1, seed=3).fetch(
            datetime({day.year}, {day.month}, {day.day}, tzinfo=UTC),
            datetime({day.year}, {day.month}, {day.day + 1}, tzinfo=UTC)))
        with psycopg.connect(sys.argv[1], autocommit=True, application_name="pasar-killed-load") as conn:
            refs = repository.instrument_refs(conn, frame["symbol"].unique().to_list())
            with conn.transaction():
                repository.ensure_bar_partitions(conn, frame["ts"].min(), frame["ts"].max())
            with conn.transaction():
                result = repository.write_bars(conn, frame, refs, source="killed")
                print("merged", result.rows_written, flush=True)
                time.sleep(120)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, urls.etl], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("merged"), line
    assert int(line.split()[1]) > 0
    process.kill()
    process.wait(timeout=30)
    # The server notices the dead client and rolls its transaction back; then nothing of the load remains.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alive = etl.execute(
            "select count(*) from pg_stat_activity where application_name = 'pasar-killed-load'"
        ).fetchone()
        if alive == (0,):
            break
        time.sleep(0.1)
    assert alive == (0,)
    assert etl.execute("select count(*) from market.bars where source = 'killed'").fetchone() == (0,)
