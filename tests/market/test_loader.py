"""The bulk loader against the real database: exact values, idempotent merges, all-or-nothing loads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest

from pasar.db.urls import DatabaseUrls
from pasar.market import service
from pasar.market.copy_format import encode_rows
from pasar.market.frames import Timeframe
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
    import numpy as np

    payload = encode_rows(
        [
            ("a", "int4", np.array([1, -7], dtype=np.int32)),
            ("b", "int8", np.array([2**40, 0], dtype=np.int64)),
            ("c", "timestamptz", np.array([0, 1_767_225_600_000_000], dtype=np.int64)),
            ("d", "bool", np.array([1, 0], dtype=np.int8)),
            ("e", "int2", np.array([3, 4], dtype=np.int16)),
        ]
    )
    with etl.transaction(force_rollback=True):
        etl.execute("create temp table copy_probe (a int4, b int8, c timestamptz, d bool, e int2)")
        with etl.cursor() as cur, cur.copy("copy copy_probe from stdin (format binary)") as copy:
            copy.write(payload)
        rows = etl.execute("select a, b, c, d, e from copy_probe order by a").fetchall()
    assert rows == [
        (-7, 0, datetime(2026, 1, 1, tzinfo=UTC), False, 4),
        (1, 2**40, datetime(1970, 1, 1, tzinfo=UTC), True, 3),
    ]


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
                result = repository.stage_and_merge(conn, frame, refs, source="killed")
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
