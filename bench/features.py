"""Feature computation: :func:`models_ml.features.compute_features` (polars) beside the same computation written in
vectorised pandas (groupby + shift/rolling/ewm, numpy for the calendar), on the same synthetic IDX 1m bars.

The pandas version below is a faithful port: same definitions, windows, warm-up and edge cases (flat windows,
non-finite values, the session position fill), checked equal to the polars output within 1e-9 (nulls in the same
places) before anything is timed. Each side starts from its own native frame (the pandas frame is converted from
the polars one beforehand, not timed) and ends with the feature frame; the best of ``--repeat`` runs counts.

Bar (ARCHITECTURE.md, "features"): polars >= 2x the same computation in vectorised pandas.

    python -m bench.features [--symbols 50] [--days 20] [--repeat 3] [--seed 7]

The last line of stdout is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]
import polars as pl

from models_ml import features as F
from pasar.market import exchange
from pasar.market.frames import Timeframe
from pasar.market.sources.synthetic import generate

BAR_RATIO = 2.0
TOLERANCE = 1e-9
DEFAULT_SYMBOLS = 50
DEFAULT_DAYS = 20
DEFAULT_REPEAT = 3

_DAY_US = 86_400_000_000
_EPOCH_DATE = date(1970, 1, 1)
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)

FloatArray = npt.NDArray[np.float64]


# The pandas port ---------------------------------------------------------------------------------------------


def _session_position_pandas(ts: Any, calendar_code: str) -> FloatArray:
    """TradingCalendar.session_position of every UTC timestamp, with numpy over the local wall clock."""
    cal = exchange.calendar(calendar_code)
    local = ts.dt.tz_convert(cal.timezone.key).dt.tz_localize(None)
    wall = local.to_numpy(dtype="datetime64[us]").astype(np.int64)
    day = wall // _DAY_US
    of_day = wall - day * _DAY_US
    seconds = (of_day // 1_000_000).astype(np.float64) + (of_day % 1_000_000).astype(np.float64) / 1e6
    weekday = (day + _EPOCH_WEEKDAY) % 7
    conditions: list[npt.NDArray[np.bool_]] = []
    values: list[FloatArray] = []
    for number, sessions in enumerate(cal.sessions):
        if not sessions:
            continue
        total = float(sum(session.seconds for session in sessions))
        on_day = weekday == number
        elapsed = 0.0
        for session in sessions:
            conditions.append(on_day & (seconds >= session.start_seconds) & (seconds < session.end_seconds))
            values.append((elapsed + seconds - session.start_seconds) / total)
            elapsed += session.seconds
    position: FloatArray = np.select(conditions, values, default=np.nan)
    if cal.holidays:
        holidays = np.array(sorted((holiday - _EPOCH_DATE).days for holiday in cal.holidays), dtype=np.int64)
        position[np.isin(day, holidays)] = np.nan
    position[np.isnan(position)] = F.SESSION_FILL
    return position


def pandas_features(bars: Any, *, calendar_code: str = "IDX") -> Any:
    """compute_features in vectorised pandas: ``symbol, ts, close`` and FEATURE_COLUMNS, sorted by symbol, ts."""
    df = bars.loc[:, list(F.BAR_COLUMNS)].astype({name: "float64" for name in F.BAR_COLUMNS[2:]})
    symbol, ts = df["symbol"], df["ts"]
    ordered = (symbol > symbol.shift(1)) | ((symbol == symbol.shift(1)) & (ts > ts.shift(1)))
    if not bool(ordered.iloc[1:].all()):  # as compute_features: a stable sort by symbol, (symbol, ts) if need be
        df = df.sort_values("symbol", kind="stable")
        symbol, ts = df["symbol"], df["ts"]
        ordered = (symbol > symbol.shift(1)) | ((symbol == symbol.shift(1)) & (ts > ts.shift(1)))
        if not bool(ordered.iloc[1:].all()):
            df = df.sort_values(["symbol", "ts"], kind="stable")
    df = df.reset_index(drop=True)
    groups = df.groupby("symbol", sort=False)
    close, volume = df["close"], df["volume"]

    def per_symbol(values: Any) -> Any:
        return values.groupby(df["symbol"], sort=False)

    shifted = {k: groups["close"].shift(k) for k in F.RETURN_HORIZONS}
    ema_fast = groups["close"].ewm(span=F.MACD_FAST, adjust=False, min_periods=F.MACD_FAST).mean().droplevel(0)
    ema_slow = groups["close"].ewm(span=F.MACD_SLOW, adjust=False, min_periods=F.MACD_SLOW).mean().droplevel(0)
    bb_rolling = groups["close"].rolling(F.BOLLINGER_WINDOW, min_periods=F.BOLLINGER_WINDOW)
    bb_mean, bb_std = bb_rolling.mean().droplevel(0), bb_rolling.std(ddof=0).droplevel(0)
    volume_rolling = groups["volume"].rolling(F.VOLUME_WINDOW, min_periods=F.VOLUME_WINDOW)
    volume_mean, volume_std = volume_rolling.mean().droplevel(0), volume_rolling.std(ddof=0).droplevel(0)
    previous = shifted[1]
    change = close - previous
    log_return = np.log(close / previous)
    gain, loss = change.clip(lower=0.0), (-change).clip(lower=0.0)
    macd = ema_fast - ema_slow
    alpha = 1.0 / F.RSI_PERIOD
    up = per_symbol(gain).ewm(alpha=alpha, adjust=True, min_periods=F.RSI_PERIOD).mean().droplevel(0)
    down = per_symbol(loss).ewm(alpha=alpha, adjust=True, min_periods=F.RSI_PERIOD).mean().droplevel(0)
    signal = per_symbol(macd).ewm(span=F.MACD_SIGNAL, adjust=False, min_periods=F.MACD_SIGNAL).mean().droplevel(0)
    moved = up + down
    out = pd.DataFrame({"symbol": df["symbol"], "ts": df["ts"], "close": close})
    for k in F.RETURN_HORIZONS:
        out[f"ret_{k}"] = close / shifted[k] - 1.0
    for k in F.VOLATILITY_WINDOWS:
        out[f"vol_{k}"] = per_symbol(log_return).rolling(k, min_periods=k).std(ddof=1).droplevel(0)
    out["rsi_14"] = np.where(moved > 0, 100.0 * up / moved, np.where(moved == 0, 50.0, np.nan))
    out["macd"] = macd / close
    out["macd_signal"] = signal / close
    out["macd_hist"] = (macd - signal) / close
    bb_flat = bb_std <= F.FLAT_TOLERANCE * bb_mean.abs()
    out["bb_pos_20"] = np.where(bb_flat, 0.5, 0.5 + (close - bb_mean) / (2.0 * F.BOLLINGER_WIDTH * bb_std))
    out.loc[bb_std.isna(), "bb_pos_20"] = np.nan
    volume_flat = volume_std <= F.FLAT_TOLERANCE * volume_mean.abs()
    out["vol_z_20"] = np.where(volume_flat, 0.0, (volume - volume_mean) / volume_std)
    out.loc[volume_std.isna(), "vol_z_20"] = np.nan
    out["session_pos"] = _session_position_pandas(df["ts"], calendar_code)
    out["range_pct"] = (df["high"] - df["low"]) / close
    values = out.loc[:, list(F.FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    values[~np.isfinite(values)] = np.nan
    out.loc[:, list(F.FEATURE_COLUMNS)] = values
    return out


# Checking and timing -----------------------------------------------------------------------------------------


class BenchError(RuntimeError):
    """The two implementations disagree."""


def max_difference(polars_out: pl.DataFrame, pandas_out: Any) -> float:
    """The largest absolute difference over every feature; BenchError when rows, order or nulls differ."""
    if polars_out.height != len(pandas_out):
        raise BenchError(f"row counts differ: polars {polars_out.height}, pandas {len(pandas_out)}")
    if polars_out["symbol"].to_list() != pandas_out["symbol"].tolist():
        raise BenchError("symbol order differs")
    polars_ts = polars_out["ts"].dt.epoch("us").to_numpy()
    pandas_ts = pandas_out["ts"].dt.tz_convert("UTC").to_numpy(dtype="datetime64[us]").astype(np.int64)
    if not np.array_equal(polars_ts, pandas_ts):
        raise BenchError("ts order differs")
    worst = 0.0
    for name in ("close", *F.FEATURE_COLUMNS):
        left = polars_out[name].to_numpy().astype(np.float64)
        right = pandas_out[name].to_numpy(dtype=np.float64)
        if not np.array_equal(np.isnan(left), np.isnan(right)):
            raise BenchError(f"{name}: nulls in different rows")
        known = ~np.isnan(left)
        diff = float(np.max(np.abs(left[known] - right[known]), initial=0.0))
        if diff > TOLERANCE:
            raise BenchError(f"{name}: differs by {diff:.3g} > {TOLERANCE:g}")
        worst = max(worst, diff)
    return worst


@dataclass(frozen=True)
class Options:
    symbols: int
    days: int
    repeat: int
    seed: int


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.features", description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=DEFAULT_SYMBOLS, help="synthetic IDX symbols")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="trading days of 1m bars")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="timed runs per side (best counts)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.symbols < 1 or args.days < 1 or args.repeat < 1:
        parser.error("--symbols, --days and --repeat must be >= 1")
    return Options(args.symbols, args.days, args.repeat, args.seed)


def _best_of_interleaved(repeat: int, runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    """The best wall time of each run over ``repeat`` rounds, the runs taking turns within a round (so that a
    burst of other load on the machine hits both sides alike)."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def run(options: Options) -> dict[str, Any]:
    bars = generate(options.symbols, options.days, Timeframe.m1, seed=options.seed)
    rows = bars.height
    if rows == 0:
        raise BenchError("the generator made no bars")
    bars_pd = bars.select(F.BAR_COLUMNS).to_pandas()
    print(
        f"{rows:,} bars: {options.symbols} symbols x {options.days} IDX trading days of 1m bars "
        f"(seed {options.seed}); {os.cpu_count()} CPUs, polars {pl.__version__}, pandas {pd.__version__}, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    polars_out = F.compute_features(bars)
    pandas_out = pandas_features(bars_pd)
    worst = max_difference(polars_out, pandas_out)
    print(f"check: equal within {TOLERANCE:g} (largest difference {worst:.3g}); nulls in the same rows")
    best = _best_of_interleaved(
        options.repeat, {"polars": lambda: F.compute_features(bars), "pandas": lambda: pandas_features(bars_pd)}
    )
    polars_s, pandas_s = best["polars"], best["pandas"]
    polars_rps, pandas_rps = rows / polars_s, rows / pandas_s
    ratio = pandas_s / polars_s
    print(f"{'':<8}{'best s':>10}{'rows/s':>14}   (best of {options.repeat})")
    print(f"{'polars':<8}{polars_s:>10.4f}{polars_rps:>14,.0f}")
    print(f"{'pandas':<8}{pandas_s:>10.4f}{pandas_rps:>14,.0f}")
    print(f"ratio polars/pandas (rows/s): {ratio:.2f}x")
    passed = ratio >= BAR_RATIO
    print(f"bar polars >= {BAR_RATIO:g}x pandas: {'PASS' if passed else 'FAIL'} ({ratio:.2f}x)")
    return {
        "bench": "features",
        "rows": rows,
        "symbols": options.symbols,
        "days": options.days,
        "repeat": options.repeat,
        "polars_s": round(polars_s, 5),
        "pandas_s": round(pandas_s, 5),
        "polars_rows_per_s": round(polars_rps),
        "pandas_rows_per_s": round(pandas_rps),
        "ratio": round(ratio, 3),
        "max_abs_diff": worst,
        "bar_ratio": BAR_RATIO,
        "bar_pass": passed,
    }


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        figures = run(options)
    except BenchError as exc:
        print(f"features: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
