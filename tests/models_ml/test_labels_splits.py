"""Labels, walk-forward splits, the dataset builder, and reading bars for modelling from the real database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import psycopg
import pytest

from models_ml.data import Dataset, build_dataset, load_bars
from models_ml.features import FEATURE_COLUMNS, MIN_HISTORY, complete, compute_features
from models_ml.labels import IDX_ROUND_TRIP_COST, forward_return, label
from models_ml.splits import walk_forward_splits
from pasar.db.urls import DatabaseUrls
from pasar.market import repository, service
from pasar.market.frames import Timeframe
from pasar.market.sources.synthetic import generate

T0 = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)


def _closes(symbol: str, closes: list[float], *, offset: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": [symbol] * len(closes),
            "ts": [T0 + timedelta(minutes=offset + i) for i in range(len(closes))],
            "close": closes,
        }
    )


# Labels -------------------------------------------------------------------------------------------------------


def test_forward_return_by_hand() -> None:
    bars = _closes("AAAA", [100.0, 110.0, 99.0, 121.0])
    assert forward_return(bars, 1).to_list() == pytest.approx([0.1, -0.1, 121 / 99 - 1, None])
    assert forward_return(bars, 2).to_list()[:2] == pytest.approx([-0.01, 0.1])
    assert forward_return(bars, 2).to_list()[2:] == [None, None]
    assert forward_return(bars, 4).to_list() == [None] * 4
    assert forward_return(bars, 1).name == "forward_return"


def test_forward_return_never_crosses_symbols_and_follows_the_given_rows() -> None:
    a = _closes("AAAA", [100.0, 101.0, 102.0])
    b = _closes("BBBB", [10.0, 20.0, 40.0])
    interleaved = pl.concat([a, b]).sort("ts", "symbol", descending=[True, False])  # latest first, mixed
    values = interleaved.with_columns(forward_return(interleaved, 1))
    by_row = {(row["symbol"], row["ts"]): row["forward_return"] for row in values.iter_rows(named=True)}
    assert by_row[("AAAA", T0)] == pytest.approx(0.01)
    assert by_row[("BBBB", T0)] == pytest.approx(1.0)
    assert by_row[("BBBB", T0 + timedelta(minutes=1))] == pytest.approx(1.0)
    # Each symbol's last bar has no future, even though the other symbol's bars follow in the frame.
    assert by_row[("AAAA", T0 + timedelta(minutes=2))] is None
    assert by_row[("BBBB", T0 + timedelta(minutes=2))] is None


def test_label_is_net_of_cost() -> None:
    bars = pl.concat([_closes("AAAA", [100.0, 100.5, 101.0, 100.0, 100.0]), _closes("BBBB", [50.0, 51.0])])
    labelled = label(bars.reverse(), horizon=1, cost=0.004)
    assert labelled.columns == ["symbol", "ts", "forward_return", "label"]
    assert labelled.schema["label"] == pl.Int8
    assert labelled.schema["ts"] == pl.Datetime("us", "UTC")
    assert labelled["symbol"].to_list() == ["AAAA"] * 5 + ["BBBB"] * 2  # sorted by symbol, ts
    # +0.5% beats 0.4%; +0.4975% beats it; -0.99% and 0% do not; the last bar of each symbol is unknown.
    assert labelled["label"].to_list() == [1, 1, 0, 0, None, 1, None]
    assert labelled["forward_return"][4] is None
    exactly = label(_closes("CCCC", [100.0, 100.0]), horizon=1, cost=0.0)
    assert exactly["label"].to_list() == [0, None]  # must beat the cost, not just meet it
    assert IDX_ROUND_TRIP_COST == 0.004


def test_label_arguments_are_checked() -> None:
    bars = _closes("AAAA", [1.0, 2.0])
    for horizon in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="horizon"):
            label(bars, horizon=horizon, cost=0.0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="horizon"):
            forward_return(bars, horizon)  # type: ignore[arg-type]
    for cost in (-0.001, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="cost"):
            label(bars, horizon=1, cost=cost)
    with pytest.raises(ValueError, match="close"):
        label(bars.drop("close"), horizon=1, cost=0.0)


# Walk-forward splits ------------------------------------------------------------------------------------------


def _grid(stamps: int, symbols: int = 3) -> list[datetime]:
    """Row timestamps of ``symbols`` symbols on a common 1-minute grid, rows in a scrambled order."""
    rows = [T0 + timedelta(minutes=i) for i in range(stamps) for _ in range(symbols)]
    order = np.random.default_rng(1).permutation(len(rows))
    return [rows[i] for i in order]


def _numpy(stamps: list[datetime]) -> np.ndarray:
    return np.array([stamp.replace(tzinfo=None) for stamp in stamps], dtype="datetime64[us]")  # all UTC


def _check_folds(stamps: list[datetime], folds: list[tuple[np.ndarray, np.ndarray]], embargo: Any) -> None:
    values = _numpy(stamps)
    previous_test_end = None
    for train, test in folds:
        assert train.dtype == test.dtype == np.int64
        assert len(train) and len(test)
        assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
        assert not set(train) & set(test)
        train_ts, test_ts = values[train], values[test]
        if isinstance(embargo, timedelta):
            assert train_ts.max() < test_ts.min() - np.timedelta64(embargo)
        else:
            distinct = np.unique(values)
            gap = np.searchsorted(distinct, test_ts.min()) - np.searchsorted(distinct, train_ts.max())
            assert gap == embargo + 1
        # Rows sharing a timestamp are on the same side.
        assert set(np.flatnonzero(np.isin(values, test_ts))) == set(test)
        # Consecutive test blocks: each starts right after the previous one ends.
        if previous_test_end is not None:
            later = values[values > previous_test_end]
            assert test_ts.min() == later.min()
        previous_test_end = test_ts.max()
    assert previous_test_end == values.max()


def test_walk_forward_folds_with_an_embargo_in_bars() -> None:
    stamps = _grid(100)
    folds = walk_forward_splits(stamps, n_splits=4, embargo=5, min_train=0.4)
    assert len(folds) == 4
    _check_folds(stamps, folds, 5)
    values = _numpy(stamps)
    assert [len(np.unique(values[test])) for _, test in folds] == [15, 15, 15, 15]
    assert [len(np.unique(values[train])) for train, _ in folds] == [35, 50, 65, 80]  # expanding, minus 5
    assert np.unique(values[folds[0][1]])[0] == np.datetime64(T0.replace(tzinfo=None) + timedelta(minutes=40))


def test_walk_forward_folds_with_an_embargo_in_time() -> None:
    stamps = _grid(90, symbols=2)
    embargo = timedelta(minutes=7, seconds=30)
    folds = walk_forward_splits(pl.Series("ts", stamps), n_splits=3, embargo=embargo, min_train=30)
    _check_folds(stamps, folds, embargo)
    values = _numpy(stamps)
    # Test starts at minute 30: training ends before minute 22.5, i.e. at minute 22.
    assert values[folds[0][0]].max() == np.datetime64(T0.replace(tzinfo=None) + timedelta(minutes=22))


def test_walk_forward_accepts_numpy_and_uneven_blocks() -> None:
    stamps = _grid(23, symbols=1)
    folds = walk_forward_splits(_numpy(stamps), n_splits=3, embargo=0, min_train=0.5)
    _check_folds(stamps, folds, 0)
    assert [len(test) for _, test in folds] == [4, 4, 3]  # 11 test timestamps after ceil(0.5 * 23) = 12


def test_walk_forward_bad_arguments() -> None:
    stamps = _grid(20, symbols=1)
    bad: list[dict[str, Any]] = [
        {"n_splits": 0, "embargo": 1},
        {"n_splits": True, "embargo": 1},
        {"n_splits": 2, "embargo": -1},
        {"n_splits": 2, "embargo": timedelta(minutes=-1)},
        {"n_splits": 2, "embargo": 1.5},
        {"n_splits": 2, "embargo": 1, "min_train": 0.0},
        {"n_splits": 2, "embargo": 1, "min_train": 1.0},
        {"n_splits": 2, "embargo": 1, "min_train": 0},
        {"n_splits": 2, "embargo": 1, "min_train": 19},  # 1 timestamp left for 2 test blocks
        {"n_splits": 2, "embargo": 10, "min_train": 10},  # the embargo eats every training timestamp
        {"n_splits": 2, "embargo": timedelta(hours=1)},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
            walk_forward_splits(stamps, **kwargs)
    with pytest.raises(ValueError, match="no timestamps"):
        walk_forward_splits([], n_splits=2, embargo=0)
    with pytest.raises(ValueError, match="datetime"):
        walk_forward_splits(pl.Series([1, 2, 3]), n_splits=1, embargo=0)
    with pytest.raises(ValueError, match="nulls"):
        walk_forward_splits(pl.Series([T0, None, T0]), n_splits=1, embargo=0)


# The dataset ----------------------------------------------------------------------------------------------------


def test_build_dataset_on_synthetic_bars() -> None:
    bars = generate(3, 2, Timeframe.m1, seed=9)
    horizon, cost = 5, IDX_ROUND_TRIP_COST
    dataset = build_dataset(bars, horizon=horizon, cost=cost)
    per_symbol = bars.height // 3
    assert len(dataset) == 3 * (per_symbol - (MIN_HISTORY - 1) - horizon)
    assert dataset.feature_names == FEATURE_COLUMNS
    assert dataset.X.dtype == np.float32 and dataset.X.shape == (len(dataset), len(FEATURE_COLUMNS))
    assert dataset.X.flags.c_contiguous
    assert dataset.y.dtype == np.int8 and set(np.unique(dataset.y)) <= {0, 1}
    assert dataset.ts.dtype == np.dtype("datetime64[us]")
    assert dataset.forward_returns.dtype == np.float64
    assert dataset.symbols.dtype.kind == "U"
    assert np.isfinite(dataset.X).all() and np.isfinite(dataset.forward_returns).all()
    np.testing.assert_array_equal(dataset.y, (dataset.forward_returns > cost).astype(np.int8))
    # Sorted by ts, then symbol.
    keys = list(zip(dataset.ts.tolist(), dataset.symbols.tolist(), strict=True))
    assert keys == sorted(keys)
    # The rows are the features of those bars.
    features = complete(compute_features(bars))
    row = 17
    match = features.filter(
        (pl.col("symbol") == str(dataset.symbols[row])) & (pl.col("ts").dt.replace_time_zone(None) == dataset.ts[row])
    )
    np.testing.assert_allclose(dataset.X[row], match.select(FEATURE_COLUMNS).to_numpy()[0].astype(np.float32))
    first, last = dataset.data_range
    assert first == features["ts"].min().isoformat()  # type: ignore[union-attr]
    assert first.endswith("+00:00")
    assert datetime.fromisoformat(last) < bars["ts"].max()  # type: ignore[operator]
    half = dataset.take(np.arange(10))
    assert len(half) == 10 and half.feature_names == FEATURE_COLUMNS
    folds = walk_forward_splits(dataset.ts, n_splits=3, embargo=horizon)
    assert len(folds) == 3


def test_an_empty_dataset_and_shape_checks() -> None:
    dataset = build_dataset(generate(1, 1, Timeframe.m1).head(30), horizon=1, cost=0.0)
    assert len(dataset) == 0 and dataset.X.shape == (0, len(FEATURE_COLUMNS))
    with pytest.raises(ValueError, match="empty"):
        _ = dataset.data_range
    with pytest.raises(ValueError, match="shape"):
        Dataset(
            X=np.zeros((2, 3), dtype=np.float32),
            y=np.zeros(2, dtype=np.int8),
            ts=np.zeros(2, dtype="datetime64[us]"),
            symbols=np.array(["A", "B"]),
            forward_returns=np.zeros(2),
            feature_names=FEATURE_COLUMNS,
        )


# Reading bars for modelling (real database) ---------------------------------------------------------------------


@pytest.fixture
def etl(urls: DatabaseUrls) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(urls.etl, autocommit=True) as conn:
        service.sync_reference_data(conn)
        yield conn


def test_read_bars_frame_against_the_database(etl: psycopg.Connection[Any]) -> None:
    # Own symbols in a far-future window, so no other test's bars get in the way.
    symbols = ["MLFA", "MLFB"]
    bars = generate(symbols, 2, Timeframe.m1, start=date(2033, 3, 1), seed=21)
    service.load_frame(etl, bars, source="test-ml")
    start, end = bars["ts"].min(), bars["ts"].max()
    assert isinstance(start, datetime) and isinstance(end, datetime)

    frame = repository.read_bars_frame(etl, symbols=symbols, timeframe="1m", start=start, end=end)
    assert frame.columns == ["symbol", "ts", "open", "high", "low", "close", "volume"]
    assert frame.schema["ts"] == pl.Datetime("us", "UTC")
    assert all(frame.schema[name] == pl.Float64 for name in ("open", "high", "low", "close", "volume"))
    expected = bars.filter(pl.col("ts") < end).select(frame.columns).sort("symbol", "ts")
    assert frame.equals(expected)  # whole-rupiah prices and whole-lot volumes come back exactly; end excluded

    everything = load_bars(etl, symbols=symbols, timeframe="1m", start=None, end=None)
    assert everything.equals(bars.select(frame.columns).sort("symbol", "ts"))
    one = repository.read_bars_frame(etl, symbols=["MLFB"], timeframe="1m", start=start, end=None)
    assert one["symbol"].unique().to_list() == ["MLFB"] and one.height == bars.height // 2
    assert repository.read_bars_frame(etl, symbols=symbols, timeframe="5m", start=None, end=None).is_empty()
    window = repository.read_bars_frame(
        etl, symbols=None, timeframe="1m", start=start + timedelta(minutes=5), end=start + timedelta(minutes=7)
    )
    assert set(window["symbol"].to_list()) >= set(symbols)
    assert window.filter(pl.col("symbol").is_in(symbols)).height == 4
    assert repository.read_bars_frame(etl, symbols=[], timeframe="1m", start=None, end=None).is_empty()
    empty = repository.read_bars_frame(etl, symbols=["NOPE"], timeframe="1m", start=None, end=None)
    assert empty.is_empty() and empty.schema == frame.schema
    with pytest.raises(ValueError, match="timeframe"):
        repository.read_bars_frame(etl, symbols=symbols, timeframe="2m", start=None, end=None)

    # The frame feeds the dataset builder as it is.
    dataset = build_dataset(everything, horizon=3, cost=0.0)
    assert len(dataset) == 2 * (bars.height // 2 - (MIN_HISTORY - 1) - 3)
