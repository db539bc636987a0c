"""The market and usage assets materialized in process against the session's real PostgreSQL: row counts, checks,
idempotent re-materialization, a failed load that leaves the previous rows, the landing folder and its sensor,
and the usage rollup."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import dagster as dg
import psycopg
import pytest

from orchestration.defs.market.assets import bundled_bars, instruments, landing_bars, synthetic_bars
from orchestration.defs.market.sensors import landing_sensor
from orchestration.defs.usage.assets import usage_daily
from orchestration.resources import PasarDatabase
from pasar.config import Settings
from pasar.db.urls import DatabaseUrls
from pasar.market import exchange, repository
from pasar.market.frames import Timeframe
from pasar.market.sources.bundled import bundled_frame
from pasar.market.sources.synthetic import synthetic_symbols

IDX = exchange.calendar("IDX")
SMALL = {"symbols": 5, "timeframe": "1m", "seed": 7}


@pytest.fixture
def database(settings: Settings, tmp_path: Path) -> PasarDatabase:
    assert settings.etl_database_url is not None
    return PasarDatabase(etl_database_url=settings.etl_database_url.get_secret_value(), home=str(tmp_path / "home"))


@pytest.fixture
def etl(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    assert settings.etl_database_url is not None
    with psycopg.connect(settings.etl_database_url.get_secret_value(), autocommit=True) as conn:
        yield conn


def synthetic_config(**overrides: Any) -> dict[str, Any]:
    return {"ops": {"synthetic_bars": {"config": {**SMALL, **overrides}}}}


def materialize(asset: dg.AssetsDefinition, database: PasarDatabase, **kwargs: Any) -> dg.ExecuteInProcessResult:
    """``asset`` alone (its upstream instruments asset listed but not run)."""
    assets = [instruments] if asset is instruments else [instruments, asset]
    return dg.materialize(assets, selection=[asset], resources={"database": database}, **kwargs)


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    [materialization] = result.asset_materializations_for_node(node)
    return {key: value.value for key, value in materialization.metadata.items()}


def snapshot(
    conn: psycopg.Connection[Any], symbols: list[str], timeframe: str, start: datetime, end: datetime
) -> tuple[int, Decimal | None, str | None]:
    """Count, sum of close and md5 of every stored row in key order."""
    row = conn.execute(
        """
        select count(*), sum(b.close),
               md5(string_agg(concat_ws('|', i.symbol, b.ts, b.open, b.high, b.low, b.close, b.volume, b.source),
                              ',' order by i.symbol, b.ts))
        from market.bars b join market.instruments i on i.id = b.instrument_id
        where i.symbol = any(%s) and b.timeframe = %s and b.ts >= %s and b.ts < %s
        """,
        [symbols, timeframe, start, end],
    ).fetchone()
    assert row is not None
    return int(row[0]), row[1], row[2]


def wib_day(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), tzinfo=IDX.timezone)
    return start, start + timedelta(days=1)


# ---- reference data --------------------------------------------------------------------------------------------


def test_instruments_asset_called_directly(database: PasarDatabase) -> None:
    events = instruments(database=database)  # a generator: the materialization, then the check
    assert isinstance(events, Iterator)
    materialized, check = list(events)
    assert isinstance(materialized, dg.MaterializeResult)
    assert materialized.metadata is not None
    assert materialized.metadata["instruments"] == dg.MetadataValue.int(len(exchange.reference_instruments()))
    assert materialized.metadata["holidays"] == dg.MetadataValue.int(len(exchange.reference_holidays()))
    assert isinstance(check, dg.AssetCheckResult)
    assert check.check_name == "reference_complete"
    assert check.passed


def test_instruments_materialize(database: PasarDatabase) -> None:
    result = materialize(instruments, database)
    assert result.success
    assert check_results(result)["reference_complete"].passed
    assert metadata(result, "instruments")["instruments"] == len(exchange.reference_instruments())


# ---- bundled -----------------------------------------------------------------------------------------------------


def test_bundled_goog_partition_is_idempotent_and_reports_calendar_gaps_as_a_warning(
    database: PasarDatabase, etl: psycopg.Connection[Any]
) -> None:
    expected_rows = bundled_frame(["GOOG"]).height
    window = (datetime(2004, 1, 1, tzinfo=UTC), datetime(2014, 1, 1, tzinfo=UTC))

    first = materialize(bundled_bars, database, partition_key="GOOG")
    assert first.success
    meta = metadata(first, "bundled_bars")
    assert meta["rows"] == meta["rows_in"] == expected_rows
    assert meta["symbols"] == ["GOOG"]
    assert meta["timeframes"] == ["1d"]
    assert "| symbol | timeframe | ts |" in meta["preview"]
    checks = check_results(first)
    assert set(checks) == {"ohlc_sanity", "no_duplicates", "calendar_gaps", "freshness"}
    assert checks["ohlc_sanity"].passed
    assert checks["no_duplicates"].passed
    assert checks["freshness"].passed  # the store holds the last bar the package ships
    gaps = checks["calendar_gaps"]
    assert not gaps.passed  # XNAS ships no holidays, so every US holiday is a "missing" day
    assert gaps.severity == dg.AssetCheckSeverity.WARN
    assert gaps.metadata["missing"].value > 0
    assert gaps.metadata["per_series"].value["GOOG 1d"]["first_missing"]
    before = snapshot(etl, ["GOOG"], "1d", *window)
    assert before[0] == expected_rows

    again = materialize(bundled_bars, database, partition_key="GOOG")
    assert again.success
    assert metadata(again, "bundled_bars")["rows_written"] == 0  # identical rows are left alone
    assert metadata(again, "bundled_bars")["checksum"] == meta["checksum"]
    assert snapshot(etl, ["GOOG"], "1d", *window) == before


# ---- synthetic ---------------------------------------------------------------------------------------------------


def test_synthetic_trading_day_loads_every_bar_passes_checks_and_rematerializes_identically(
    database: PasarDatabase, etl: psycopg.Connection[Any]
) -> None:
    symbols = synthetic_symbols(5)
    day = date(2026, 1, 6)
    bars_per_day = len(IDX.bar_starts(day, Timeframe.m1))

    previous = materialize(synthetic_bars, database, partition_key="2026-01-05", run_config=synthetic_config())
    assert previous.success
    first = materialize(synthetic_bars, database, partition_key="2026-01-06", run_config=synthetic_config())
    assert first.success
    meta = metadata(first, "synthetic_bars")
    assert meta["rows"] == meta["rows_in"] == 5 * bars_per_day
    assert meta["symbols"] == sorted(symbols)
    assert datetime.fromtimestamp(meta["first_ts"], UTC) == IDX.bar_starts(day, Timeframe.m1)[0]
    checks = check_results(first)
    assert set(checks) == {"ohlc_sanity", "no_duplicates", "calendar_gaps", "price_jumps"}
    assert all(evaluation.passed for evaluation in checks.values()), {
        name: evaluation.metadata for name, evaluation in checks.items() if not evaluation.passed
    }
    assert checks["calendar_gaps"].metadata["missing"].value == 0
    assert checks["price_jumps"].metadata["days_checked"].value == 5  # against 2026-01-05's closes
    before = snapshot(etl, symbols, "1m", *wib_day(day))
    assert before[0] == 5 * bars_per_day

    again = materialize(synthetic_bars, database, partition_key="2026-01-06", run_config=synthetic_config())
    assert again.success
    assert metadata(again, "synthetic_bars")["rows_written"] == 0
    assert snapshot(etl, symbols, "1m", *wib_day(day)) == before


def test_synthetic_non_trading_day_loads_nothing_and_succeeds(database: PasarDatabase) -> None:
    saturday = "2026-01-10"
    result = materialize(synthetic_bars, database, partition_key=saturday, run_config=synthetic_config())
    assert result.success
    assert metadata(result, "synthetic_bars")["rows"] == 0
    assert all(evaluation.passed for evaluation in check_results(result).values())


def test_failed_load_leaves_the_previous_rows_intact(
    database: PasarDatabase, etl: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    symbols = synthetic_symbols(5)
    day = date(2026, 1, 8)
    assert materialize(synthetic_bars, database, partition_key=day.isoformat(), run_config=synthetic_config()).success
    before = snapshot(etl, symbols, "1m", *wib_day(day))
    assert before[0] > 0

    real_write = repository.write_bars
    merged: list[int] = []

    def merge_then_die(*args: Any, **kwargs: Any) -> repository.MergeResult:
        result = real_write(*args, **kwargs)
        merged.append(result.rows_written)
        raise dg.Failure("killed after the merge, before the commit", allow_retries=False)

    monkeypatch.setattr(repository, "write_bars", merge_then_die)
    failed = materialize(
        synthetic_bars,
        database,
        partition_key=day.isoformat(),
        run_config=synthetic_config(seed=11),  # other prices: had it committed, the checksum would change
        raise_on_error=False,
    )
    assert not failed.success
    assert merged and merged[0] > 0  # the new rows were written inside the transaction, then rolled back
    assert snapshot(etl, symbols, "1m", *wib_day(day)) == before


# ---- landing -----------------------------------------------------------------------------------------------------


def write_bbca_daily(path: Path, days: list[date]) -> None:
    lines = ["timestamp,open,high,low,close,volume"]
    close = 7500
    for i, day in enumerate(days):
        open_, close = close, close + (25 if i % 2 == 0 else -50)
        lines.append(
            f"{day.isoformat()},{open_},{max(open_, close) + 25},{min(open_, close) - 25},{close},{1000000 + i}"
        )
    path.write_text("\n".join(lines) + "\n")


def test_landing_loads_good_files_rejects_bad_ones_and_the_sensor_follows(
    database: PasarDatabase, etl: psycopg.Connection[Any]
) -> None:
    landing = Path(database.home) / "landing"
    landing.mkdir(parents=True)
    days = IDX.trading_days(date(2026, 1, 5), date(2026, 1, 9))
    write_bbca_daily(landing / "BBCA_1d.csv", days)
    (landing / "BAD_1d.csv").write_text("timestamp,open,high,low,close,volume\n2026-01-05,100,90,95,96,1000\n")
    context = dg.build_sensor_context(resources={"database": database})

    request = landing_sensor(context)
    assert isinstance(request, dg.RunRequest)
    assert request.run_key
    again = landing_sensor(dg.build_sensor_context(resources={"database": database}))
    assert isinstance(again, dg.RunRequest)
    assert again.run_key == request.run_key  # the same waiting files: one run

    result = materialize(landing_bars, database)
    assert result.success
    assert (landing / "processed" / "BBCA_1d.csv").is_file()
    assert (landing / "rejected" / "BAD_1d.csv").is_file()
    reason = (landing / "rejected" / "BAD_1d.csv.reason.txt").read_text()
    assert "low" in reason.lower() or "high" in reason.lower()
    assert not list(landing.glob("*.csv"))

    meta = metadata(result, "landing_bars")
    assert meta["files_loaded"] == 1
    assert meta["files_rejected"] == 1
    assert meta["rejected"][0]["file"] == "BAD_1d.csv"
    assert meta["rows"] == len(days)
    assert meta["symbols"] == ["BBCA"]
    checks = check_results(result)
    assert set(checks) == {"ohlc_sanity", "no_duplicates", "calendar_gaps", "freshness", "price_jumps"}
    for name in ("ohlc_sanity", "no_duplicates", "calendar_gaps", "price_jumps"):
        assert checks[name].passed, (name, checks[name].metadata)
    assert checks["price_jumps"].metadata["days_checked"].value == len(days) - 1
    assert not checks["freshness"].passed  # January bars, judged in November
    assert checks["freshness"].severity == dg.AssetCheckSeverity.WARN

    start, end = wib_day(days[0])[0], wib_day(days[-1])[1]
    assert snapshot(etl, ["BBCA"], "1d", start, end)[0] == len(days)
    sources = etl.execute(
        "select distinct b.source from market.bars b join market.instruments i on i.id = b.instrument_id "
        "where i.symbol = 'BBCA' and b.timeframe = '1d' and b.ts >= %s and b.ts < %s",
        [start, end],
    ).fetchall()
    assert sources == [("landing:BBCA_1d.csv",)]

    skipped = landing_sensor(dg.build_sensor_context(resources={"database": database}))
    assert isinstance(skipped, dg.SkipReason)


def test_landing_with_no_files_succeeds_with_passing_checks(database: PasarDatabase) -> None:
    result = materialize(landing_bars, database)
    assert result.success
    assert metadata(result, "landing_bars")["files_loaded"] == 0
    assert all(evaluation.passed for evaluation in check_results(result).values())


# ---- usage -------------------------------------------------------------------------------------------------------


def test_usage_daily_counts_each_idempotency_key_once(
    database: PasarDatabase, urls: DatabaseUrls, make_tenant: Any
) -> None:
    tenant_a, tenant_b = UUID(make_tenant().id), UUID(make_tenant().id)
    day = datetime.now(UTC).date() - timedelta(days=1)  # the latest usage_daily partition
    at = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    events = [
        (tenant_a, at + timedelta(hours=1), "req-1", "api_request", 1, 0),
        (tenant_a, at + timedelta(hours=1, seconds=5), "req-1", "api_request", 1, 0),  # a retried write
        (tenant_a, at + timedelta(hours=2), "req-2", "api_request", 1, 0),
        (tenant_a, at + timedelta(hours=3), "tok-1", "ai_tokens", 1200, 30),
        (tenant_a, at + timedelta(hours=3, seconds=1), "tok-1", "ai_tokens", 1200, 30),
        (tenant_b, at + timedelta(hours=23, minutes=59, seconds=59), "req-1", "api_request", 1, 0),
        (tenant_b, at + timedelta(days=1), "req-9", "api_request", 1, 0),  # the next day
        (tenant_b, at - timedelta(microseconds=1), "req-8", "api_request", 1, 0),  # the day before
    ]
    with psycopg.connect(urls.owner, autocommit=True) as conn:
        conn.cursor().executemany(
            "insert into usage.events (tenant_id, ts, idempotency_key, kind, quantity, cost) "
            "values (%s, %s, %s, %s, %s, %s)",
            events,
        )

    for _ in range(2):  # re-materializing recomputes the same day
        result = materialize(usage_daily, database, partition_key=day.isoformat())
        assert result.success
        with psycopg.connect(urls.owner, autocommit=True) as conn:
            rows = conn.execute(
                "select tenant_id, kind, events, quantity, cost from usage.daily "
                "where day = %s and tenant_id = any(%s) order by tenant_id = %s desc, kind",
                [day, [tenant_a, tenant_b], tenant_a],
            ).fetchall()
        assert rows == [
            (tenant_a, "ai_tokens", 1, 1200, 30),
            (tenant_a, "api_request", 2, 2, 0),
            (tenant_b, "api_request", 1, 1, 0),
        ]
        totals = metadata(result, "usage_daily")["totals"]
        assert totals["api_request"]["events"] >= 3
        assert totals["ai_tokens"]["quantity"] >= 1200
