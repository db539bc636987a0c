"""The landing-folder parser on real-shaped files: layouts, time zones, malformed rows, duplicates, big files."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pasar.market.frames import BAR_SCHEMA, Timeframe
from pasar.market.sources.landing import (
    LandingFileError,
    ParsedFile,
    infer_timeframe,
    parse_file,
    symbol_and_timeframe_from_name,
)

DATA = Path(__file__).parent / "data"
HEADER = "timestamp,symbol,open,high,low,close,volume\n"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def refused(path: Path, **kwargs: str) -> str:
    with pytest.raises(LandingFileError) as info:
        parse_file(path, **kwargs)
    assert info.value.reason == str(info.value)
    return info.value.reason


def row(parsed: ParsedFile, symbol: str, ts: datetime) -> dict[str, object]:
    found = parsed.frame.filter((pl.col("symbol") == symbol) & (pl.col("ts") == ts))
    assert found.height == 1, f"no single {symbol} bar at {ts}"
    return found.row(0, named=True)


# ---- layouts ------------------------------------------------------------------------------------------------------


def test_yahoo_csv_keeps_raw_prices_and_ignores_adj_close() -> None:
    parsed = parse_file(DATA / "BBCA.JK.csv")
    assert parsed.symbols == ("BBCA",)  # .JK stripped, from the file name
    assert parsed.timeframe is Timeframe.d1  # inferred: 1-day gaps, 3 over the weekend
    assert parsed.adjusted is False
    assert parsed.layout == "yahoo"
    assert (parsed.rows_in, parsed.duplicates_dropped, parsed.frame.height) == (7, 0, 7)
    assert dict(parsed.frame.schema) == BAR_SCHEMA
    # 2026-01-05 is a WIB trading day: the bar starts at 00:00 Asia/Jakarta = 17:00 UTC the day before.
    bar = row(parsed, "BBCA", utc(2026, 1, 4, 17))
    assert bar == {
        "symbol": "BBCA",
        "timeframe": "1d",
        "ts": utc(2026, 1, 4, 17),
        "open": 8100.0,
        "high": 8175.0,
        "low": 8050.0,
        "close": 8150.0,  # the raw Close, not Adj Close 7961.1875
        "volume": 61540200.0,
        "adjusted": False,
    }
    assert parsed.frame["ts"].is_sorted()


def test_adjusted_flag_from_file_name_and_column(tmp_path: Path) -> None:
    named = tmp_path / "BBCA_1d_adj.csv"
    shutil.copy(DATA / "BBCA.JK.csv", named)
    parsed = parse_file(named)
    assert (parsed.symbols, parsed.timeframe, parsed.adjusted) == (("BBCA",), Timeframe.d1, True)
    assert parsed.frame["adjusted"].all()

    column = write(
        tmp_path,
        "ASII.csv",
        "date,open,high,low,close,volume,adjusted\n2026-01-05,5000,5100,4950,5050,100,true\n"
        "2026-01-06,5050,5100,5000,5075,200,TRUE\n",
    )
    assert parse_file(column).adjusted is True
    unadjusted = write(tmp_path, "ASII.csv", "date,open,high,low,close,volume,adjusted\n2026-01-05,1,2,1,2,5,false\n")
    assert parse_file(unadjusted).adjusted is False
    mixed = write(
        tmp_path,
        "ASII.csv",
        "date,open,high,low,close,volume,adjusted\n2026-01-05,1,2,1,2,5,true\n2026-01-06,1,2,1,2,5,0\n",
    )
    assert "mixes adjusted and unadjusted" in refused(mixed)


def test_idx_summary_with_indonesian_names_numbers_and_dates() -> None:
    parsed = parse_file(DATA / "idx_ringkasan_saham_2026-01.csv")
    assert parsed.layout == "idx"
    assert parsed.symbols == ("BBCA", "BBRI", "TLKM")
    assert parsed.timeframe is Timeframe.d1
    assert (parsed.rows_in, parsed.frame.height) == (15, 15)
    # "05/01/2026" is 5 January (day first); 00:00 WIB = 17:00 UTC on the 4th. "8.100" is 8100, "61.540.200" 61540200.
    bbca = row(parsed, "BBCA", utc(2026, 1, 4, 17))
    assert (bbca["open"], bbca["high"], bbca["low"], bbca["close"], bbca["volume"]) == (
        8100.0,
        8175.0,
        8050.0,
        8150.0,
        61_540_200.0,
    )
    tlkm = row(parsed, "TLKM", utc(2026, 1, 8, 17))
    assert (tlkm["close"], tlkm["volume"]) == (3560.0, 69_850_700.0)
    assert "Nilai" not in parsed.frame.columns


def test_idx_intraday_wib_to_utc() -> None:
    parsed = parse_file(DATA / "TLKM_1h.csv")
    assert (parsed.symbols, parsed.timeframe, parsed.layout) == (("TLKM",), Timeframe.h1, "idx")
    assert parsed.timezone == "Asia/Jakarta"
    # Tanggal "05 Jan 2026" + Jam "09:00" in WIB (UTC+7) -> 02:00 UTC.
    first = parsed.frame.row(0, named=True)
    assert first["ts"] == utc(2026, 1, 5, 2)
    assert (first["open"], first["high"], first["low"], first["close"], first["volume"]) == (
        3540.0,
        3560.0,
        3520.0,
        3550.0,
        21_304_500.0,
    )
    assert parsed.frame["ts"][3] == utc(2026, 1, 5, 6)  # 13:00 WIB after the lunch break
    assert parsed.frame["ts"][-1] == utc(2026, 1, 6, 3)


def test_indonesian_decimal_comma_and_month_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "BBCA.csv",
        "Tanggal;Pembukaan;Tertinggi;Terendah;Penutupan;Volume\n"
        "02 Jan 2026;9.875,50;9.900;9.850;9.880,25;1.234.500\n"
        "05 Jan 2026;9.880;9.950;9.875;9.925;2.000.000\n",
    )
    parsed = parse_file(path)
    first = parsed.frame.row(0, named=True)
    assert (first["open"], first["close"], first["volume"]) == (9875.5, 9880.25, 1_234_500.0)
    assert first["ts"] == utc(2026, 1, 1, 17)


@pytest.mark.parametrize(
    ("text", "month"),
    [
        ("02 Jan 2026", 1),
        ("02 Feb 2026", 2),
        ("02 Mar 2026", 3),
        ("02 Apr 2026", 4),
        ("02 Mei 2026", 5),
        ("02 Jun 2026", 6),
        ("02 Jul 2026", 7),
        ("02 Agu 2026", 8),
        ("02 Agt 2026", 8),
        ("02 Sep 2026", 9),
        ("02 Okt 2026", 10),
        ("02 Nov 2026", 11),
        ("02 Des 2026", 12),
        ("02-Dec-2026", 12),
        ("2 Agustus 2026", 8),
        ("02/05/2026", 5),
        ("2026-05-02", 5),
        ("20260502", 5),
    ],
)
def test_date_forms(tmp_path: Path, text: str, month: int) -> None:
    path = write(tmp_path, "BBCA.csv", f"Tanggal,Pembukaan,Tertinggi,Terendah,Penutupan,Volume\n{text},1,2,1,2,5\n")
    parsed = parse_file(path, default_timezone="UTC")
    assert parsed.frame["ts"].to_list() == [utc(2026, month, 2)]
    assert parsed.timeframe is Timeframe.d1  # a single date-only row is a daily bar


def test_month_first_slash_dates_when_the_data_proves_it(tmp_path: Path) -> None:
    path = write(tmp_path, "AAPL.csv", "date,open,high,low,close,volume\n01/12/2026,1,2,1,2,5\n01/13/2026,1,2,1,2,5\n")
    parsed = parse_file(path, default_timezone="UTC")
    assert parsed.frame["ts"].to_list() == [utc(2026, 1, 12), utc(2026, 1, 13)]


def test_generic_csv_with_symbol_column() -> None:
    parsed = parse_file(DATA / "generic_5m.csv")
    assert parsed.layout == "generic"
    assert parsed.symbols == ("BBCA", "BBRI")  # from the ticker column (.JK stripped), not from the name
    assert parsed.timeframe is Timeframe.m5  # named, and the 5-minute gaps agree
    assert parsed.frame.height == 10
    bbri = row(parsed, "BBRI", utc(2026, 1, 5, 2, 20))  # 09:20 WIB
    assert (bbri["open"], bbri["high"], bbri["low"], bbri["close"], bbri["volume"]) == (
        3980.0,
        4000.0,
        3980.0,
        3990.0,
        1_533_700.0,
    )


def _bars(n: int) -> dict[str, list[float]]:
    return {
        "open": [100.0 + i for i in range(n)],
        "high": [102.0 + i for i in range(n)],
        "low": [99.0 + i for i in range(n)],
        "close": [101.0 + i for i in range(n)],
        "volume": [1000.0 * (i + 1) for i in range(n)],
    }


def test_parquet_tz_aware_naive_and_epoch(tmp_path: Path) -> None:
    wib = [datetime(2026, 1, 5, 9, 0) + timedelta(minutes=i) for i in range(3)]
    aware = pl.DataFrame({"timestamp": wib, "symbol": ["bbca"] * 3, **_bars(3)}).with_columns(
        pl.col("timestamp").dt.replace_time_zone("Asia/Jakarta")
    )
    aware.write_parquet(tmp_path / "bars.parquet")
    parsed = parse_file(tmp_path / "bars.parquet", default_timezone="America/New_York")  # aware: the default is moot
    assert (parsed.symbols, parsed.timeframe, parsed.file_format) == (("BBCA",), Timeframe.m1, "parquet")
    assert parsed.frame["ts"].to_list() == [utc(2026, 1, 5, 2, i) for i in range(3)]
    assert parsed.frame["close"].to_list() == [101.0, 102.0, 103.0]

    pl.DataFrame({"datetime": wib, **_bars(3)}).write_parquet(tmp_path / "BBCA_1m.parquet")
    naive = parse_file(tmp_path / "BBCA_1m.parquet")
    assert naive.frame["ts"].to_list() == [utc(2026, 1, 5, 2, i) for i in range(3)]
    assert (naive.symbols, naive.timeframe) == (("BBCA",), Timeframe.m1)

    seconds = [int(utc(2026, 1, 5, 2, i).timestamp()) for i in range(3)]
    for name, values in (("s", seconds), ("ms", [s * 1000 for s in seconds])):
        pl.DataFrame({"time": values, "ticker": ["TLKM"] * 3, **_bars(3)}).write_parquet(tmp_path / f"epoch_{name}.pq")
        epoch = parse_file(tmp_path / f"epoch_{name}.pq")
        assert epoch.frame["ts"].to_list() == [utc(2026, 1, 5, 2, i) for i in range(3)]
        assert epoch.timezone is None

    pl.DataFrame(
        {
            "Date": [date(2026, 1, 5), date(2026, 1, 6)],
            "Open": [1.0, 1.0],
            "High": [2, 2],
            "Low": [1, 1],
            "Close": [2.0, 2.0],
            "Adj Close": [1.9, 1.9],
            "Volume": [5, 6],
        }
    ).write_parquet(tmp_path / "ASII.parquet")
    yahoo = parse_file(tmp_path / "ASII.parquet")
    assert (yahoo.layout, yahoo.timeframe, yahoo.adjusted) == ("yahoo", Timeframe.d1, False)
    assert yahoo.frame["ts"].to_list() == [utc(2026, 1, 4, 17), utc(2026, 1, 5, 17)]


def test_parquet_nan_price_refused(tmp_path: Path) -> None:
    bars = _bars(2)
    bars["open"][1] = float("nan")
    pl.DataFrame({"timestamp": [datetime(2026, 1, 5), datetime(2026, 1, 6)], **bars}).write_parquet(
        tmp_path / "BBCA.parquet"
    )
    assert "row 2: open is NaN" in refused(tmp_path / "BBCA.parquet")


# ---- malformed files ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2026-01-06,BBCA,abc,110,90,105,1000", "row 2: open 'abc' is not a number"),
        ("2026-01-06,BBCA,100,90,110,105,1000", "row 2: low 110.0 > high 90.0"),
        ("2026-01-06,BBCA,100,110,90,105,-5", "row 2: volume -5.0 is negative"),
        ("2026-01-06,BBCA,100,110,90,120,5", "row 2: close 120.0 outside [low 90.0, high 110.0]"),
        ("2026-01-06,BBCA,-1,110,90,105,5", "row 2: open -1.0 is not a positive price"),
        ("2026-01-06,BBCA,nan,110,90,105,5", "row 2: open is NaN"),
        ("2026-01-06,BBCA,,110,90,105,5", "row 2: open is empty"),
        ("31/02/2026,BBCA,100,110,90,105,5", "row 2: timestamp '31/02/2026' is not a valid date/time"),
        ("yesterday,BBCA,100,110,90,105,5", "row 2: timestamp 'yesterday' is not a valid date/time"),
        ("2026-01-06,,100,110,90,105,5", "row 2: symbol is empty"),
    ],
)
def test_malformed_row_refuses_the_whole_file(tmp_path: Path, line: str, message: str) -> None:
    path = write(
        tmp_path, "bars.csv", f"{HEADER}2026-01-05,BBCA,100,110,90,105,1000\n{line}\n2026-01-07,BBCA,1,2,1,2,3\n"
    )
    reason = refused(path)
    assert message in reason
    assert reason.startswith("1 malformed row")


def test_malformed_rows_report_the_first_few(tmp_path: Path) -> None:
    lines = "".join(f"2026-01-{day:02d},BBCA,100,110,90,105,{-day}\n" for day in range(1, 9))
    reason = refused(write(tmp_path, "bars.csv", HEADER + "2025-12-31,BBCA,100,110,90,105,5\n" + lines))
    assert reason.startswith("8 malformed rows")
    for number in range(2, 7):
        assert f"row {number}: volume" in reason
    assert "row 7:" not in reason
    assert "and 3 more" in reason


def test_idx_number_not_in_indonesian_format(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "BBCA.csv",
        "Tanggal;Pembukaan;Tertinggi;Terendah;Penutupan;Volume\n05/01/2026;9.875;9.900;9.850;9.880;1.234.500\n"
        "06/01/2026;9.875;9.900;9.850;98.80;1.234.500\n",
    )
    assert "row 2: Penutupan '98.80' is not a number" in refused(path)


def test_missing_columns_named(tmp_path: Path) -> None:
    reason = refused(write(tmp_path, "BBCA.csv", "Date,Open,Low,Close\n2026-01-05,1,1,1\n"))
    assert "missing required columns: high, volume" in reason
    assert "'Date', 'Open', 'Low', 'Close'" in reason


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty"),
        (b"  \n\n", "the file is empty"),
        (b"Date,Open,High,Low,Close,Volume\n", "no data rows"),
        (b"Date,Open,High,Low,Close,Volume\n\n\n", "no data rows"),
        (bytes(range(256)) * 40, "binary content"),
        (b"PK\x03\x04\x14\x00\x06\x00", "ZIP archive or Excel workbook"),
        ("Date,Open,High,Low,Close,Volume\n2026-01-05,1,2,1,2,5 caf\u00e9\n".encode("latin-1"), "not UTF-8"),
        ("Date,Open\n".encode("utf-16"), "UTF-16"),
        (b"Date,Open,High,Low,Close,Volume\n2026-01-05,1,2,1,2,5,9,9\n", "row 1 has 8 fields"),
    ],
)
def test_unreadable_files_refused(tmp_path: Path, content: bytes, expected: str) -> None:
    assert expected in refused(write(tmp_path, "BBCA.csv", content))


def test_invalid_parquet_refused(tmp_path: Path) -> None:
    assert "not a valid Parquet file" in refused(write(tmp_path, "BBCA.parquet", b"not parquet at all"))
    good = tmp_path / "good.parquet"
    pl.DataFrame({"timestamp": [datetime(2026, 1, 5)], **_bars(1)}).write_parquet(good)
    assert "not a valid Parquet file" in refused(write(tmp_path, "BBCA_1d.parquet", good.read_bytes()[:60]))
    empty = tmp_path / "TLKM.parquet"
    pl.DataFrame({"timestamp": [], **{k: [] for k in _bars(0)}}).write_parquet(empty)
    assert "no data rows" in refused(empty)


def test_bom_crlf_and_blank_lines_are_fine(tmp_path: Path) -> None:
    content = b"\xef\xbb\xbfDate,Open,High,Low,Close,Volume\r\n2026-01-05,1,2,1,2,5\r\n\r\n2026-01-06,1,2,1,2,5\r\n\r\n"
    parsed = parse_file(write(tmp_path, "BBCA.csv", content))
    assert (parsed.rows_in, parsed.frame.height) == (2, 2)


# ---- time zones ---------------------------------------------------------------------------------------------------


def test_aware_timestamps_are_honoured(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bars.csv",
        HEADER + "2026-01-05T09:00:00+07:00,BBCA,1,2,1,2,5\n2026-01-05T02:05:00Z,BBCA,1,2,1,2,5\n"
        "2026-01-05 04:10:00+0200,BBCA,1,2,1,2,5\n",
    )
    parsed = parse_file(path, default_timezone="America/New_York")
    assert parsed.frame["ts"].to_list() == [utc(2026, 1, 5, 2, 0), utc(2026, 1, 5, 2, 5), utc(2026, 1, 5, 2, 10)]
    assert parsed.timezone is None


def test_naive_timestamps_use_the_timezone_column_else_the_default(tmp_path: Path) -> None:
    lines = "2026-01-05 09:30,AAPL,1,2,1,2,5,{zone}\n2026-01-05 09:35,AAPL,1,2,1,2,5,{zone}\n"
    with_zone = write(tmp_path, "ny.csv", HEADER.replace("\n", ",timezone\n") + lines.format(zone="America/New_York"))
    parsed = parse_file(with_zone)
    assert parsed.timezone == "America/New_York"
    assert parsed.frame["ts"][0] == utc(2026, 1, 5, 14, 30)  # EST = UTC-5

    default = write(tmp_path, "jkt.csv", HEADER + "2026-01-05 09:30,BBCA,1,2,1,2,5\n2026-01-05 09:35,BBCA,1,2,1,2,5\n")
    assert parse_file(default).frame["ts"][0] == utc(2026, 1, 5, 2, 30)  # WIB = UTC+7
    assert parse_file(default, default_timezone="UTC").frame["ts"][0] == utc(2026, 1, 5, 9, 30)

    wib = write(tmp_path, "wib.csv", HEADER.replace("\n", ",tz\n") + lines.format(zone="WIB"))
    assert parse_file(wib).frame["ts"][0] == utc(2026, 1, 5, 2, 30)

    summer = write(
        tmp_path,
        "summer.csv",
        HEADER.replace("\n", ",timezone\n") + "2026-07-06,AAPL,1,2,1,2,5,America/New_York\n",
    )
    assert parse_file(summer).frame["ts"][0] == utc(2026, 7, 6, 4)  # a date: 00:00 EDT = 04:00 UTC


def test_odd_time_zones_refused(tmp_path: Path) -> None:
    header = HEADER.replace("\n", ",timezone\n")
    unknown = write(tmp_path, "a.csv", header + "2026-01-05 09:30,X,1,2,1,2,5,Mars/Olympus\n")
    assert "unknown time zone 'Mars/Olympus'" in refused(unknown)
    several = write(
        tmp_path, "b.csv", header + "2026-01-05 09:30,X,1,2,1,2,5,Asia/Jakarta\n2026-01-05 09:35,X,1,2,1,2,5,UTC\n"
    )
    assert "several time zones" in refused(several)
    mixed = write(tmp_path, "c.csv", HEADER + "2026-01-05T09:00:00+07:00,X,1,2,1,2,5\n2026-01-05 09:05,X,1,2,1,2,5\n")
    assert "mix absolute times" in refused(mixed)
    gap = write(tmp_path, "d.csv", header + "2026-03-08 02:30,X,1,2,1,2,5,America/New_York\n")
    assert "row 1: local time 2026-03-08 02:30:00 does not exist in America/New_York" in refused(gap)
    with pytest.raises(ValueError, match="unknown time zone") as info:
        parse_file(DATA / "BBCA.JK.csv", default_timezone="Nowhere/Zone")
    assert not isinstance(info.value, LandingFileError)  # a configuration error, not a bad file


def test_repeated_autumn_hour_is_two_instants(tmp_path: Path) -> None:
    header = HEADER.replace("\n", ",timezone\n")
    rows = ["00:00,1", "01:00,2", "01:00,3", "02:00,4"]
    content = "".join(f"2026-11-01 {t.split(',')[0]},X,1,2,1,2,{t.split(',')[1]},America/New_York\n" for t in rows)
    parsed = parse_file(write(tmp_path, "X.csv", header + content))
    assert parsed.frame["ts"].to_list() == [utc(2026, 11, 1, h) for h in (4, 5, 6, 7)]
    assert parsed.timeframe is Timeframe.h1


# ---- duplicates ---------------------------------------------------------------------------------------------------


def test_identical_duplicates_dropped_and_counted(tmp_path: Path) -> None:
    content = (
        HEADER + "2026-01-05 09:00,BBCA,1,2,1,2,5\n2026-01-05 09:01,BBCA,1,2,1,2,5\n2026-01-05 09:00,BBCA,1,2,1,2,5\n"
        "2026-01-05 09:02,BBCA,1,2,1,2,5\n2026-01-05 09:00,BBCA,1,2,1,2,5\n"
    )
    parsed = parse_file(write(tmp_path, "bars.csv", content))
    assert (parsed.rows_in, parsed.duplicates_dropped, parsed.frame.height) == (5, 2, 3)
    assert parsed.frame["ts"].is_unique().all()


def test_conflicting_duplicates_refused(tmp_path: Path) -> None:
    content = (
        HEADER + "2026-01-05 09:00,BBCA,1,2,1,2,5\n2026-01-05 09:01,BBCA,1,2,1,2,5\n2026-01-05 09:00,BBCA,1,2,1,2,6\n"
    )
    reason = refused(write(tmp_path, "bars.csv", content))
    assert "1 conflicting duplicate bar" in reason
    assert "rows 1, 3 (BBCA 2026-01-05 02:00 UTC)" in reason


def test_same_instant_in_two_offsets_is_a_duplicate(tmp_path: Path) -> None:
    content = HEADER + "2026-01-05T09:00:00+07:00,BBCA,1,2,1,2,5\n2026-01-05T02:00:00Z,BBCA,1,2,1,2,5\n"
    parsed = parse_file(write(tmp_path, "BBCA_1m.csv", content))
    assert (parsed.frame.height, parsed.duplicates_dropped) == (1, 1)


# ---- a 10 MB file -------------------------------------------------------------------------------------------------


def test_ten_megabyte_csv(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    per_symbol = 30_000
    stamps = pl.datetime_range(
        datetime(2026, 1, 5, 9), datetime(2026, 1, 5, 9) + timedelta(minutes=per_symbol - 1), "1m", eager=True
    ).dt.strftime("%Y-%m-%dT%H:%M:%S+07:00")
    frames = []
    for symbol in ("BBCA", "BBRI", "BMRI", "TLKM", "ASII"):
        close = 20_000 + np.cumsum(rng.integers(-1, 2, per_symbol)) * 25
        opens = close + rng.integers(-2, 3, per_symbol) * 25
        high = np.maximum(opens, close) + rng.integers(0, 3, per_symbol) * 25
        low = np.minimum(opens, close) - rng.integers(0, 3, per_symbol) * 25
        frames.append(
            pl.DataFrame(
                {
                    "timestamp": stamps,
                    "symbol": symbol,
                    "open": opens.astype(float),
                    "high": high.astype(float),
                    "low": low.astype(float),
                    "close": close.astype(float),
                    "volume": rng.integers(0, 5_000_000, per_symbol) * 100,
                }
            )
        )
    expected = pl.concat(frames)
    path = tmp_path / "idx_1m.csv"
    expected.write_csv(path)
    assert path.stat().st_size >= 10_000_000

    best = float("inf")
    for _ in range(3):  # best of three: the bar is the parser's speed, not the machine's momentary load
        started = time.perf_counter()
        parsed = parse_file(path)
        best = min(best, time.perf_counter() - started)
        if best < 2.0:
            break
    assert best < 2.0, f"parsing {path.stat().st_size / 1e6:.1f} MB took {best:.2f} s"
    assert (parsed.rows_in, parsed.frame.height, parsed.duplicates_dropped) == (150_000, 150_000, 0)
    assert parsed.timeframe is Timeframe.m1
    assert parsed.frame["close"].sum() == pytest.approx(expected["close"].sum())
    assert parsed.frame["ts"].min() == utc(2026, 1, 5, 2)


# ---- timeframes ---------------------------------------------------------------------------------------------------


def _weekdays(start: date, days: int) -> list[date]:
    return [d for d in (start + timedelta(days=i) for i in range(days)) if d.weekday() < 5]


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        ([datetime(2026, 1, 5, 9) + timedelta(minutes=i) for i in range(30)], Timeframe.m1),
        ([datetime(2026, 1, 5, 9) + timedelta(minutes=5 * i) for i in range(30)], Timeframe.m5),
        ([datetime(2026, 1, 5, 9) + timedelta(minutes=15 * i) for i in range(10)], Timeframe.m15),
        ([datetime(2026, 1, 5, 9) + timedelta(hours=i) for i in range(7)], Timeframe.h1),
        (_weekdays(date(2026, 1, 1), 60), Timeframe.d1),
        ([date(2026, 1, 5) + timedelta(weeks=i) for i in range(10)], Timeframe.w1),
        ([date(2026, m, 1) for m in range(1, 13)], Timeframe.mo1),
        ([date(2025, m + 1, 1) - timedelta(days=1) for m in range(1, 12)], Timeframe.mo1),
        ([date(2026, 1, 5)], Timeframe.d1),
    ],
)
def test_infer_timeframe(stamps: list[object], expected: Timeframe) -> None:
    assert infer_timeframe(pl.Series("ts", stamps)) is expected


def test_infer_timeframe_with_gaps_and_missing_bars() -> None:
    # 1-minute bars with a lunch break, an overnight gap and a few missing minutes: the most common gap wins.
    day = [datetime(2026, 1, 5, 9) + timedelta(minutes=i) for i in range(150) if i % 17]
    next_day = [t + timedelta(days=1) for t in day]
    assert infer_timeframe(pl.Series("ts", day + next_day)) is Timeframe.m1


def test_infer_timeframe_refusals() -> None:
    with pytest.raises(LandingFileError, match="single timestamp"):
        infer_timeframe(pl.Series("ts", [datetime(2026, 1, 5, 9, 30)]))
    with pytest.raises(LandingFileError, match="most common gap between bars is 2h"):
        infer_timeframe(pl.Series("ts", [datetime(2026, 1, 5, h) for h in (1, 3, 5, 7)]))


@pytest.mark.parametrize(
    ("name", "step", "expected"),
    [
        ("BBCA.csv", timedelta(minutes=1), Timeframe.m1),
        ("BBCA.csv", timedelta(minutes=5), Timeframe.m5),
        ("BBCA.csv", timedelta(hours=1), Timeframe.h1),
        ("BBCA_1h.csv", timedelta(hours=1), Timeframe.h1),
        ("BBCA_30m.csv", timedelta(minutes=30), Timeframe.m30),
    ],
)
def test_file_timeframe_inferred_or_named(tmp_path: Path, name: str, step: timedelta, expected: Timeframe) -> None:
    start = datetime(2026, 1, 5, 9)
    content = "Date,Open,High,Low,Close,Volume\n" + "".join(
        f"{start + i * step:%Y-%m-%d %H:%M:%S},1,2,1,2,5\n" for i in range(6)
    )
    assert parse_file(write(tmp_path, name, content)).timeframe is expected


def test_named_timeframe_contradicted_by_data(tmp_path: Path) -> None:
    minutes = "Datetime,Open,High,Low,Close,Volume\n2026-01-05 09:00,1,2,1,2,5\n2026-01-05 09:01,1,2,1,2,5\n"
    assert "named 1d but BBCA has bars only 1m apart" in refused(write(tmp_path, "BBCA_1d.csv", minutes))
    days = "Date,Open,High,Low,Close,Volume\n2026-01-05,1,2,1,2,5\n2026-01-06,1,2,1,2,5\n"
    assert "named 1m but its timestamps are dates" in refused(write(tmp_path, "BBCA_1m.csv", days))
    hours = "Datetime,Open,High,Low,Close,Volume\n" + "".join(
        f"2026-01-05 {h:02d}:00,1,2,1,2,5\n" for h in range(9, 15)
    )
    assert "mostly 1h apart (1h)" in refused(write(tmp_path, "BBCA_1m.csv", hours))
    timeframe_column = "date,symbol,open,high,low,close,volume,timeframe\n2026-01-05,X,1,2,1,2,5,1d\n"
    assert "the file name says 1w but the timeframe column says 1d" in refused(
        write(tmp_path, "X_1w.csv", timeframe_column)
    )


def test_several_timeframes_in_one_file_refused(tmp_path: Path) -> None:
    per_symbol = HEADER + (
        "2026-01-05 09:00,BBCA,1,2,1,2,5\n2026-01-05 09:01,BBCA,1,2,1,2,5\n2026-01-05 09:02,BBCA,1,2,1,2,5\n"
        "2026-01-05 09:00,TLKM,1,2,1,2,5\n2026-01-05 10:00,TLKM,1,2,1,2,5\n"
    )
    assert "several timeframes in one file (BBCA 1m, TLKM 1h)" in refused(write(tmp_path, "a.csv", per_symbol))
    dates_and_times = HEADER + "2026-01-05,BBCA,1,2,1,2,5\n2026-01-05 09:00,BBCA,1,2,1,2,5\n"
    assert "several timeframes" in refused(write(tmp_path, "b.csv", dates_and_times))
    column = "date,symbol,open,high,low,close,volume,interval\n2026-01-05,X,1,2,1,2,5,1d\n2026-01-12,X,1,2,1,2,5,1wk\n"
    assert "several timeframes in one file (1d, 1w)" in refused(write(tmp_path, "c.csv", column))


def test_single_row_needs_a_named_timeframe_or_a_date(tmp_path: Path) -> None:
    one = HEADER + "2026-01-05 09:00,BBCA,1,2,1,2,5\n"
    assert "cannot infer the timeframe" in refused(write(tmp_path, "bars.csv", one))
    assert parse_file(write(tmp_path, "bars_1m.csv", one)).timeframe is Timeframe.m1
    assert parse_file(write(tmp_path, "day.csv", HEADER + "2026-01-05,BBCA,1,2,1,2,5\n")).timeframe is Timeframe.d1


# ---- symbols ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("BBCA.csv", ("BBCA", None)),
        ("bbca.csv", ("BBCA", None)),
        ("BBCA.JK.csv", ("BBCA", None)),
        ("BBCA_1d.csv", ("BBCA", Timeframe.d1)),
        ("BBCA.JK_1d.csv", ("BBCA", Timeframe.d1)),
        ("BBCA_1m.parquet", ("BBCA", Timeframe.m1)),
        ("BBCA_1d_adj.csv", ("BBCA", Timeframe.d1)),
        ("BBCA_adj.csv", ("BBCA", None)),
        ("TLKM_1mo.csv", ("TLKM", Timeframe.mo1)),
        ("TLKM_1w.parquet", ("TLKM", Timeframe.w1)),
        ("TLKM_15m.csv", ("TLKM", Timeframe.m15)),
        ("EURUSD_1h.csv", ("EURUSD", Timeframe.h1)),
        ("BTC-USD.csv", ("BTC-USD", None)),
        ("export_1h.csv", (None, Timeframe.h1)),
        ("data.csv", (None, None)),
        ("my prices.csv", (None, None)),
        ("idx_ringkasan_saham_2026-01.csv", (None, None)),
        ("20260105.csv", (None, None)),
    ],
)
def test_symbol_and_timeframe_from_name(name: str, expected: tuple[str | None, Timeframe | None]) -> None:
    assert symbol_and_timeframe_from_name(Path(name)) == expected


def test_symbol_from_column_wins_and_is_normalised(tmp_path: Path) -> None:
    content = "date,Ticker,open,high,low,close,volume\n2026-01-05, bbri.jk ,1,2,1,2,5\n2026-01-05,TLKM,1,2,1,2,5\n"
    parsed = parse_file(write(tmp_path, "BBCA_1d.csv", content))
    assert parsed.symbols == ("BBRI", "TLKM")


def test_unknown_symbol_refused(tmp_path: Path) -> None:
    content = "Date,Open,High,Low,Close,Volume\n2026-01-05,1,2,1,2,5\n"
    assert "unknown symbol" in refused(write(tmp_path, "export (3).csv", content))
    assert "unknown symbol" in refused(write(tmp_path, "data.csv", content))


def test_single_midnight_row_is_daily(tmp_path: Path) -> None:
    pl.DataFrame({"Date": [datetime(2026, 1, 5)], **_bars(1)}).write_parquet(tmp_path / "BBCA.parquet")
    parsed = parse_file(tmp_path / "BBCA.parquet")
    assert (parsed.timeframe, parsed.frame["ts"].to_list()) == (Timeframe.d1, [utc(2026, 1, 4, 17)])
