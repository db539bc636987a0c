"""Parse the CSV and Parquet files dropped into the landing folder into canonical bars.

A file is accepted whole or refused whole: :func:`parse_file` either returns a :class:`ParsedFile` with every bar of
the file or raises :class:`LandingFileError` whose ``reason`` says precisely what is wrong (the landing sensor writes
it into the reason file next to the rejected file). Nothing is ever half-parsed.

Layouts (detected from the header; names are matched case-, space-, underscore- and punctuation-insensitively):

* **Yahoo-style** -- ``Date`` (or ``Datetime``), ``Open``, ``High``, ``Low``, ``Close``, ``Adj Close`` (optional),
  ``Volume``. The raw ``Open/High/Low/Close`` are stored; ``Adj Close`` is ignored (a single adjusted column cannot
  adjust the other three prices consistently), so such a file is *unadjusted* unless flagged otherwise.
* **IDX-style** -- ``Kode Saham`` (optional), ``Tanggal``, optional ``Waktu``/``Jam``, ``Pembukaan`` (or
  ``Open Price``), ``Tertinggi``, ``Terendah``, ``Penutupan``, ``Volume``; ``Nilai``/``Frekuensi`` and any other
  column are ignored. Numbers in the Indonesian format (``9.875,50``, ``1.234.500``), dates as ``dd/mm/yyyy``,
  ``yyyy-mm-dd`` or with English or Indonesian month names (``02 Jan 2026``, ``02 Mei 2026``, ``17 Agu 2026``).
* **generic** -- ``timestamp|time|datetime|date``, ``open``, ``high``, ``low``, ``close``, ``volume``, optional
  ``symbol|ticker``, optional ``timezone`` (one IANA zone per file), optional ``adjusted``, optional ``timeframe``.
* **Parquet** with any of these column layouts; timestamps may be tz-aware or naive datetimes, dates, strings or
  epoch integers (seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude).

Numbers: a file is read either with plain decimals (``9875.5``) or in the Indonesian format; the format is chosen
per file from the values (an IDX-style header prefers Indonesian: ``9.875`` is then nine thousand eight hundred and
seventy-five; other layouts prefer plain decimals).

Dates with slashes are day first (``05/01/2026`` is 5 January), unless the file's values prove they are month
first (a second field above 12 and no first field above 12).

Symbol: from the symbol column, else from the file name (``<SYMBOL>.csv``, ``<SYMBOL>_<timeframe>.csv|.parquet``,
optionally ending in ``_adj``); upper-cased, a ``.JK`` suffix stripped. A symbol column wins over the file name.

Timeframe: from the file name (or a ``timeframe`` column), else inferred from the timestamps (:func:`infer_timeframe`).
A named timeframe that the data contradicts is refused, as is a file that mixes timeframes.

Time zones: timestamps with an offset (``+07:00``, ``Z``) or epoch integers are absolute; naive ones are wall-clock
times in the file's ``timezone`` column, else in ``default_timezone`` (Asia/Jakarta, the IDX exchange time). A date
without a time is the bar starting at 00:00 in that zone. Everything is stored in UTC. ``WIB``, ``WITA`` and ``WIT``
are accepted as Asia/Jakarta, Asia/Makassar and Asia/Jayapura. A wall-clock time that falls in a daylight-saving
gap is a malformed row; one that occurs twice (the hour repeated in autumn) is the earlier instant the first time a
symbol has it and the later instant the second time.

Adjustment: a file whose name ends in ``_adj`` (``BBCA_1d_adj.csv``) or whose ``adjusted`` column is true holds
prices adjusted for corporate actions (``adjusted = True``); otherwise the prices are raw.

Validation (each refuses the whole file): empty file, header only, unreadable or binary content, not UTF-8,
invalid Parquet; missing required columns; malformed rows -- unparseable numbers or dates, missing values,
NaN/infinite/non-positive prices, negative volume, ``low > high``, open or close outside ``[low, high]`` -- reported
with the first offending data rows (numbered from 1 after the header); the same symbol and bar start given twice
with different values; several timeframes in one file; no symbol; an unknown time zone. Rows that repeat another
row exactly are dropped and counted.

Everything is vectorised polars: no Python code runs per row.
"""

from __future__ import annotations

import csv
import io
import re
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pasar.market.frames import BarFrameError, Timeframe, conform

__all__ = [
    "LandingFileError",
    "ParsedFile",
    "infer_timeframe",
    "normalize_symbol",
    "parse_file",
    "parse_timeframe_token",
    "symbol_and_timeframe_from_name",
]

MAX_REPORTED_ROWS = 5
_ROW = "__pasar_landing_row__"

# --------------------------------------------------------------------------------------------------------------------
# Public types


class LandingFileError(ValueError):
    """A landing file that is refused as a whole; ``reason`` is the human-readable explanation."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ParsedFile:
    """Every bar of one landing file, canonical, plus what was learned about the file."""

    frame: pl.DataFrame  # canonical (conform()ed), sorted by symbol and ts, duplicates dropped
    symbols: tuple[str, ...]  # sorted
    timeframe: Timeframe
    adjusted: bool
    rows_in: int  # data rows read (blank lines not counted)
    duplicates_dropped: int  # rows identical to an earlier row
    layout: str = "generic"  # the header layout: "yahoo", "idx" or "generic" (for reports)
    file_format: str = "csv"  # "csv" or "parquet"
    timezone: str | None = None  # the zone naive timestamps were read in (None if every timestamp was absolute)


# --------------------------------------------------------------------------------------------------------------------
# File names

_TIMEFRAME_TOKENS: dict[str, Timeframe] = {
    **{tf.value: tf for tf in Timeframe},
    "1min": Timeframe.m1,
    "5min": Timeframe.m5,
    "15min": Timeframe.m15,
    "30min": Timeframe.m30,
    "60m": Timeframe.h1,
    "60min": Timeframe.h1,
    "hourly": Timeframe.h1,
    "1day": Timeframe.d1,
    "daily": Timeframe.d1,
    "1wk": Timeframe.w1,
    "weekly": Timeframe.w1,
    "1mth": Timeframe.mo1,
    "monthly": Timeframe.mo1,
}
_ADJ_TOKENS = frozenset({"adj", "adjusted"})
_FILE_SUFFIXES = frozenset({".csv", ".txt", ".tsv", ".parquet", ".pq"})
_NAME_SYMBOL = re.compile(r"^[A-Z0-9^][A-Z0-9.\-^=&]{0,19}$")
# Words that name the content of a file rather than an instrument: "data.csv" is not the symbol DATA.
_GENERIC_NAMES = frozenset(
    {
        "BARS",
        "DATA",
        "DOWNLOAD",
        "EXPORT",
        "FILE",
        "HISTORICAL",
        "HISTORY",
        "OHLC",
        "OHLCV",
        "PRICES",
        "QUOTES",
        "SAMPLE",
        "TEST",
        "UNTITLED",
    }
)


def parse_timeframe_token(token: str) -> Timeframe | None:
    """``"1d"``, ``"1D"``, ``"daily"``, ``"1wk"``, ``"60min"`` ... -> Timeframe; None if not a timeframe.

    Case-insensitive, so ``1M`` is one minute: a month is ``1mo`` (or ``monthly``).
    """
    return _TIMEFRAME_TOKENS.get(token.strip().lower())


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix.lower() in _FILE_SUFFIXES else path.name


def _name_tokens(path: Path) -> tuple[list[str], bool]:
    """The stem's ``_``-separated tokens with a trailing ``_adj`` removed, and whether it was there."""
    tokens = _stem(path).split("_")
    adjusted = len(tokens) > 1 and tokens[-1].lower() in _ADJ_TOKENS
    return (tokens[:-1] if adjusted else tokens), adjusted


def normalize_symbol(symbol: str) -> str:
    """Upper-cased, surrounding space removed, the IDX ``.JK`` suffix stripped: ``bbca.jk`` -> ``BBCA``."""
    upper = symbol.strip().upper()
    return upper[:-3] if upper.endswith(".JK") else upper


def symbol_and_timeframe_from_name(path: str | Path) -> tuple[str | None, Timeframe | None]:
    """The symbol and timeframe a file name gives, each None when the name does not give it.

    ``BBCA.csv`` -> (BBCA, None); ``BBCA_1d.csv`` -> (BBCA, 1d); ``bbca.jk_1m.parquet`` -> (BBCA, 1m);
    ``BBCA_1d_adj.csv`` -> (BBCA, 1d); ``export_1h.csv`` -> (None, 1h); ``my prices.csv`` -> (None, None).
    A symbol must contain a letter, use only ``A-Z 0-9 . - ^ = &`` and not be a generic word such as DATA.
    """
    tokens, _ = _name_tokens(Path(path))
    timeframe = parse_timeframe_token(tokens[-1]) if len(tokens) > 1 else None
    if timeframe is not None:
        tokens = tokens[:-1]
    candidate = normalize_symbol("_".join(tokens))
    usable = (
        _NAME_SYMBOL.match(candidate) is not None
        and any(ch.isalpha() for ch in candidate)
        and candidate not in _GENERIC_NAMES
    )
    return (candidate if usable else None), timeframe


def _adjusted_from_name(path: Path) -> bool:
    return _name_tokens(path)[1]


# --------------------------------------------------------------------------------------------------------------------
# Timeframe inference

_US_PER_S = 1_000_000
_DAY_S = 86_400
# (timeframe, smallest and largest most-common gap in seconds that means this timeframe, smallest gap allowed)
_GAP_RULES: tuple[tuple[Timeframe, float, float, float], ...] = (
    *((tf, tf.seconds * 0.9, tf.seconds * 1.1, tf.seconds * 0.9) for tf in Timeframe if tf.seconds < _DAY_S),
    (Timeframe.d1, 20 * 3_600, 3.5 * _DAY_S, 20 * 3_600),  # 1 day, 3 over a weekend, 23/25 h across DST in UTC
    (Timeframe.w1, 5 * _DAY_S, 9 * _DAY_S, 4 * _DAY_S),
    (Timeframe.mo1, 25 * _DAY_S, 35 * _DAY_S, 25 * _DAY_S),
)
_MIN_GAP_S = {tf: lowest for tf, _, _, lowest in _GAP_RULES}


def _human_seconds(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    parts = []
    for unit, size in (("d", _DAY_S), ("h", 3_600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return " ".join(parts)


def _timeframe_for_gap(seconds: float) -> Timeframe | None:
    for tf, low, high, _ in _GAP_RULES:
        if low <= seconds <= high:
            return tf
    return None


def _no_timeframe_for_gap(seconds: float, where: str = "") -> LandingFileError:
    return LandingFileError(
        f"cannot infer the timeframe{where}: the most common gap between bars is {_human_seconds(seconds)}, which is "
        f"none of {', '.join(tf.value for tf in Timeframe)}; name the timeframe in the file name "
        "(e.g. BBCA_1d.csv) if the data is sparse"
    )


def _gap_stats(frame: pl.DataFrame, ts: str, by: str | None, *, prepared: bool = False) -> pl.DataFrame:
    """Per group: the most common positive gap (ties -> the smallest) and the smallest gap, in microseconds.

    ``prepared``: the frame is already sorted by ``by`` and ``ts`` with no repeated (``by``, ``ts``) pair.
    """
    keys = [by] if by else []
    times = frame.select(*keys, pl.col(ts).dt.epoch("us").alias("_t"))
    if not prepared:
        times = times.unique().sort([*keys, "_t"])
    gaps = times.with_columns((pl.col("_t").diff().over(by) if by else pl.col("_t").diff()).alias("_gap")).filter(
        pl.col("_gap") > 0
    )
    if not keys:
        gaps = gaps.with_columns(pl.lit(0).alias("_all"))
        keys = ["_all"]
    mode = (
        gaps.group_by([*keys, "_gap"])
        .len()
        .sort([*keys, "len", "_gap"], descending=[False, True, False])
        .group_by(keys, maintain_order=True)
        .first()
        .select(*keys, pl.col("_gap").alias("mode_us"))
    )
    smallest = gaps.group_by(keys).agg(pl.col("_gap").min().alias("min_us"))
    return mode.join(smallest, on=keys).sort(keys)


def infer_timeframe(ts: pl.Series, *, date_only: bool | None = None) -> Timeframe:
    """The timeframe of one symbol's bar starts: the most common positive gap between consecutive distinct
    timestamps, mapped to the nearest Timeframe (intraday within 10%; 1d for gaps of about 1-3 days, as weekends
    make; 1w for about 7 days; 1mo for 28-31 days).

    With fewer than two distinct timestamps there is no gap: date-only values (a ``Date`` series, or
    ``date_only=True``) are daily bars; anything else raises :class:`LandingFileError`, as does a gap that matches
    no timeframe.
    """
    if date_only is None:
        date_only = ts.dtype == pl.Date
    if not (ts.dtype == pl.Date or isinstance(ts.dtype, pl.Datetime)):
        raise TypeError(f"infer_timeframe needs dates or datetimes, got {ts.dtype}")
    series = ts.drop_nulls().alias("ts")
    if series.dtype == pl.Date:
        series = series.cast(pl.Datetime("us"))
    stats = _gap_stats(series.to_frame(), "ts", None)
    if stats.is_empty():
        if date_only:
            return Timeframe.d1
        raise LandingFileError(
            "cannot infer the timeframe from a single timestamp; name it in the file name (e.g. BBCA_1m.csv)"
        )
    mode_s = stats["mode_us"][0] / _US_PER_S
    timeframe = _timeframe_for_gap(mode_s)
    if timeframe is None:
        raise _no_timeframe_for_gap(mode_s)
    return timeframe


# --------------------------------------------------------------------------------------------------------------------
# Columns

_ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "symbol": ("symbol", "ticker", "kode saham", "kode", "stock code", "code"),
    "datetime": ("datetime", "timestamp", "date time", "ts", "open time", "tanggal waktu"),
    "date": ("date", "tanggal", "trade date", "tanggal perdagangan"),
    "time": ("time", "waktu", "jam"),
    "open": ("open", "pembukaan", "open price", "harga pembukaan"),
    "high": ("high", "tertinggi", "high price", "harga tertinggi"),
    "low": ("low", "terendah", "low price", "harga terendah"),
    "close": ("close", "penutupan", "close price", "harga penutupan"),
    "adj_close": ("adj close", "adjusted close", "adj close price"),
    "volume": ("volume", "vol", "volume saham"),
    "timezone": ("timezone", "time zone", "tz", "zona waktu"),
    "adjusted": ("adjusted", "is adjusted"),
    "timeframe": ("timeframe", "interval"),
}
_NAME_ROLE = {name: role for role, names in _ROLE_NAMES.items() for name in names}
_IDX_NAMES = frozenset(
    {"kode saham", "tanggal", "waktu", "jam", "pembukaan", "tertinggi", "terendah", "penutupan", "open price"}
)
_PRICES = ("open", "high", "low", "close")
_NUMBERS = (*_PRICES, "volume")
_REQUIRED = ("timestamp", *_NUMBERS)


def _normalize_header(name: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", name.lower()).split())


@dataclass(frozen=True)
class _Columns:
    roles: dict[str, str]  # role -> column name in the file
    layout: str

    def get(self, role: str) -> str | None:
        return self.roles.get(role)


def _map_columns(columns: Sequence[str]) -> _Columns:
    roles: dict[str, str] = {}
    for name in columns:
        role = _NAME_ROLE.get(_normalize_header(name))
        if role is None:
            continue
        if role in roles:
            raise LandingFileError(
                f"columns {roles[role]!r} and {name!r} both look like the {role} column; keep only one"
            )
        roles[role] = name
    # The timestamp: a datetime column, else a date column (plus a time column), else a lone time column, else an
    # unnamed first column (a pandas index written with to_csv).
    if "datetime" in roles:
        roles["timestamp"] = roles.pop("datetime")
        roles.pop("date", None)
        roles.pop("time", None)
    elif "date" in roles:
        roles["timestamp"] = roles.pop("date")
    elif "time" in roles:
        roles["timestamp"] = roles.pop("time")
    elif columns and columns[0].strip() == "":
        roles["timestamp"] = columns[0]
    missing = [role for role in _REQUIRED if role not in roles]
    if missing:
        found = ", ".join(repr(c) for c in columns) or "none"
        raise LandingFileError(
            f"missing required columns: {', '.join(missing)} (found columns: {found}); expected a Yahoo-style "
            "(Date, Open, High, Low, Close, Adj Close, Volume), IDX-style (Kode Saham, Tanggal, Pembukaan, "
            "Tertinggi, Terendah, Penutupan, Volume) or generic (timestamp, open, high, low, close, volume) header"
        )
    normalized = {_normalize_header(c) for c in columns}
    layout = "idx" if normalized & _IDX_NAMES else "yahoo" if "adj_close" in roles else "generic"
    return _Columns(roles, layout)


# --------------------------------------------------------------------------------------------------------------------
# Reading

_MAGIC = {
    b"PK\x03\x04": "a ZIP archive or Excel workbook",
    b"\x1f\x8b": "a gzip archive",
    b"%PDF": "a PDF document",
    b"\xd0\xcf\x11\xe0": "an old Excel/Office document",
}


def _read_parquet(data: bytes) -> pl.DataFrame:
    if len(data) < 12 or not data.endswith(b"PAR1"):
        raise LandingFileError("not a valid Parquet file: it is truncated (no PAR1 footer)")
    try:
        return pl.read_parquet(io.BytesIO(data))
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LandingFileError(f"not a valid Parquet file: {first_line}") from exc


def _sniff_separator(text: str) -> str:
    header = next((line for line in text.splitlines() if line.strip()), "")
    counts = {sep: header.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def _read_csv(data: bytes) -> pl.DataFrame:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise LandingFileError("the file is UTF-16 encoded; save it as UTF-8 CSV")
    for magic, kind in _MAGIC.items():
        if data.startswith(magic):
            raise LandingFileError(f"not a CSV text file: it is {kind}")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise LandingFileError(f"not a CSV text file: binary content (a NUL byte at offset {nul})")
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        raise LandingFileError(
            f"not UTF-8 text: byte 0x{bad} at offset {exc.start} cannot be decoded; save the file as UTF-8"
        ) from exc
    if text.isspace():
        raise LandingFileError("the file is empty")
    separator = _sniff_separator(text[:65_536])
    try:
        return pl.read_csv(io.BytesIO(data), separator=separator, infer_schema=False, truncate_ragged_lines=False)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LandingFileError(f"cannot read the file as CSV: {_ragged_rows(text, separator) or first_line}") from exc


def _ragged_rows(text: str, separator: str) -> str | None:
    """On the error path only: the first data rows whose field count differs from the header's."""
    rows = csv.reader(io.StringIO(text), delimiter=separator)
    header = next(rows, [])
    bad = [
        f"row {number} has {len(fields)} fields"
        for number, fields in enumerate(rows, start=1)
        if fields and len(fields) != len(header)
    ]
    if not bad:
        return None
    more = f"; and {len(bad) - MAX_REPORTED_ROWS} more" if len(bad) > MAX_REPORTED_ROWS else ""
    return f"the header has {len(header)} fields but " + "; ".join(bad[:MAX_REPORTED_ROWS]) + more


def _read(path: Path) -> tuple[pl.DataFrame, str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LandingFileError(f"cannot read the file: {exc.strerror or exc}") from exc
    if not data or data.isspace():
        raise LandingFileError("the file is empty")
    if data.startswith(b"PAR1"):
        return _read_parquet(data), "parquet"
    if path.suffix.lower() in {".parquet", ".pq"}:
        raise LandingFileError("not a valid Parquet file: it does not start with the PAR1 magic bytes")
    return _read_csv(data), "csv"


# --------------------------------------------------------------------------------------------------------------------
# Values

_IDN_NUMBER = r"^[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+)(?:,\d+)?$"
_STRINGY = (pl.String, pl.Categorical, pl.Enum)


def _is_stringy(dtype: pl.DataType) -> bool:
    return isinstance(dtype, _STRINGY)


def _is_numeric(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or dtype == pl.Null


def _clean(column: str) -> pl.Expr:
    """A column as trimmed strings, empty -> null (for messages and string parsing)."""
    text = pl.col(column).cast(pl.String).str.strip_chars()
    return pl.when(text.str.len_bytes() > 0).then(text)


def _plain_number(text: pl.Expr) -> pl.Expr:
    return text.cast(pl.Float64, strict=False)


def _indonesian_number(text: pl.Expr) -> pl.Expr:
    converted = text.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
    return pl.when(text.str.contains(_IDN_NUMBER)).then(converted.cast(pl.Float64, strict=False))


def _choose_number_format(frame: pl.DataFrame, columns: Sequence[str], prefer_indonesian: bool) -> bool:
    """True to read the string number columns in the Indonesian format, False for plain decimals: the preferred
    format if every value fits it, else the other if every value fits that, else the preferred (whose errors are
    then reported row by row)."""
    if not columns:
        return prefer_indonesian

    def fits(indonesian: bool) -> bool:
        def ok(c: str) -> pl.Expr:
            parsed = pl.col(c).str.contains(_IDN_NUMBER) if indonesian else _plain_number(pl.col(c)).is_not_null()
            return (pl.col(c).is_null() | parsed).all()

        return bool(frame.select(pl.all_horizontal([ok(c) for c in columns])).item())

    for candidate in (prefer_indonesian, not prefer_indonesian):
        if fits(candidate):
            return candidate
    return prefer_indonesian


_MONTHS = {
    **dict.fromkeys(("jan", "januari", "january"), 1),
    **dict.fromkeys(("feb", "februari", "february", "peb", "pebruari"), 2),
    **dict.fromkeys(("mar", "maret", "march"), 3),
    **dict.fromkeys(("apr", "april"), 4),
    **dict.fromkeys(("mei", "may"), 5),
    **dict.fromkeys(("jun", "juni", "june"), 6),
    **dict.fromkeys(("jul", "juli", "july"), 7),
    **dict.fromkeys(("agu", "agt", "ags", "agustus", "aug", "august"), 8),
    **dict.fromkeys(("sep", "sept", "september"), 9),
    **dict.fromkeys(("okt", "oktober", "oct", "october"), 10),
    **dict.fromkeys(("nov", "nop", "november", "nopember"), 11),
    **dict.fromkeys(("des", "desember", "dec", "december"), 12),
}
_TIME_RE = r"(?:(?:T|\s+)(?P<H>\d{1,2})[:.](?P<M>\d{2})(?:[:.](?P<S>\d{2})(?:[.,](?P<F>\d{1,9}))?)?)?"
_OFFSET_RE = r"\s*(?P<Z>[Zz]|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?"
_DATE_FORMS = {
    "ymd": rf"^(?P<y>\d{{4}})[-./](?P<m>\d{{1,2}})[-./](?P<d>\d{{1,2}}){_TIME_RE}{_OFFSET_RE}$",
    "dmy": rf"^(?P<d>\d{{1,2}})[-./](?P<m>\d{{1,2}})[-./](?P<y>\d{{4}}){_TIME_RE}{_OFFSET_RE}$",
    "named": rf"^(?P<d>\d{{1,2}})[-\s]+(?P<mon>[A-Za-z]{{3,9}})\.?[-\s,]+(?P<y>\d{{4}}){_TIME_RE}{_OFFSET_RE}$",
    "compact": r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})$",
}
_EPOCH_RE = r"^\d{9,19}$"
# Common uniform formats tried first (value: whether the values are dates without a time): ISO, with or without an
# offset, and day-first dates as IDX exports write them (with the time joined from a Waktu/Jam column).
_FAST_FORMATS: tuple[tuple[str, bool], ...] = (
    ("%Y-%m-%d", True),
    ("%Y-%m-%d %H:%M:%S", False),
    ("%Y-%m-%dT%H:%M:%S", False),
    ("%Y-%m-%d %H:%M", False),
    ("%Y-%m-%dT%H:%M", False),
    ("%Y-%m-%d %H:%M:%S%.f", False),
    ("%Y-%m-%dT%H:%M:%S%.f", False),
    ("%Y-%m-%dT%H:%M:%S%#z", False),
    ("%Y-%m-%d %H:%M:%S%#z", False),
    ("%Y-%m-%dT%H:%M:%S%.f%#z", False),
    ("%Y-%m-%d %H:%M:%S%.f%#z", False),
    *(
        (f"%d{sep}%m{sep}%Y{clock}", not clock)
        for sep in "/-."
        for clock in ("", " %H:%M", " %H:%M:%S", " %H.%M", " %H.%M.%S")
    ),
)


@dataclass(frozen=True)
class _Stamp:
    """How to compute a row's instant: ``wall`` (naive Datetime us) minus ``offset`` minutes (null = naive)."""

    wall: pl.Expr
    offset: pl.Expr  # Int64 minutes east of UTC, null where the timestamp carries no zone
    date_only: pl.Expr  # Boolean


def _epoch_to_wall(value: pl.Expr) -> pl.Expr:
    """Epoch numbers (s, ms, us or ns by magnitude) as naive UTC Datetime us."""
    magnitude = value.abs()
    micros = (
        pl.when(magnitude < 1e11)
        .then(value * 1_000_000)
        .when(magnitude < 1e14)
        .then(value * 1_000)
        .when(magnitude < 1e17)
        .then(value)
        .otherwise(value / 1_000)
    )
    return micros.round(0).cast(pl.Int64, strict=False).cast(pl.Datetime("us"))


def _fast_stamp(probe: pl.Series) -> _Stamp | None:
    """The column parsed with one common ISO format if every value has it (polars' native strptime), else None."""
    first = probe.drop_nulls().head(1)
    if first.is_empty():
        return None
    for fmt, date_only in _FAST_FORMATS:
        if first.str.strptime(pl.Datetime("us"), fmt, strict=False).null_count():
            continue
        parsed = probe.str.strptime(pl.Datetime("us"), fmt, strict=False)
        if parsed.null_count() != probe.null_count():
            return None  # not every value has this format: the general parser reports the odd ones
        if isinstance(parsed.dtype, pl.Datetime) and parsed.dtype.time_zone is not None:
            wall = parsed.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
            return _Stamp(pl.lit(wall), pl.lit(0, pl.Int64), pl.lit(False))
        return _Stamp(pl.lit(parsed), pl.lit(None, pl.Int64), pl.lit(date_only))
    return None


def _string_stamp(frame: pl.DataFrame, text: pl.Expr) -> _Stamp:
    """Parse trimmed timestamp strings in every supported form: a fast path for uniform ISO columns, else a
    vectorised regex extraction per form (year first, day first, month names, yyyymmdd, epoch numbers)."""
    probe = frame.select(text.alias("t"))["t"]
    fast = _fast_stamp(probe)
    if fast is not None:
        return fast
    parts = {form: probe.str.extract_groups(pattern).struct.unnest() for form, pattern in _DATE_FORMS.items()}
    dmy = parts["dmy"]
    month_first = bool(
        dmy.select((pl.col("m").cast(pl.Int32) > 12).any() & ~(pl.col("d").cast(pl.Int32) > 12).any()).item()
    )
    if month_first:
        dmy = dmy.with_columns(d=pl.col("m"), m=pl.col("d"))
    named = parts["named"].with_columns(
        m=pl.col("mon").str.to_lowercase().replace_strict(_MONTHS, default=None, return_dtype=pl.String)
    )

    def field(name: str, forms: Sequence[pl.DataFrame]) -> pl.Series:
        present = [f[name] for f in forms if name in f.columns]
        return pl.select(pl.coalesce(present).alias(name)).to_series()

    forms = [parts["ymd"], dmy, named, parts["compact"]]
    fields = pl.DataFrame([field(n, forms) for n in ("y", "m", "d", "H", "M", "S", "F", "Z")])
    # Any form's regex matching means the row parsed as a date: named forms with an unknown month stay null below.
    matched = pl.any_horizontal([pl.lit(f["y"]).is_not_null() for f in forms])
    iso = pl.format(
        "{}-{}-{} {}:{}:{}",
        pl.col("y"),
        pl.col("m").str.zfill(2),
        pl.col("d").str.zfill(2),
        pl.col("H").fill_null("0").str.zfill(2),
        pl.col("M").fill_null("00"),
        pl.col("S").fill_null("00"),
    )
    micros = pl.col("F").str.pad_end(6, "0").str.slice(0, 6).cast(pl.Int64).fill_null(0)
    wall = iso.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False) + pl.duration(microseconds=micros)
    zone = pl.col("Z").str.to_uppercase()
    sign = pl.when(zone.str.starts_with("-")).then(-1).otherwise(1)
    hours = zone.str.slice(1, 2).cast(pl.Int64, strict=False)
    minutes = zone.str.replace(":", "", literal=True).str.slice(3, 2).cast(pl.Int64, strict=False).fill_null(0)
    offset = pl.when(zone.is_in(["Z", "UTC", "GMT"])).then(pl.lit(0, pl.Int64)).otherwise(sign * (hours * 60 + minutes))
    parsed = fields.with_columns(
        matched.alias("matched"),
        wall.alias("wall"),
        offset.alias("offset"),
        pl.col("H").is_null().alias("date_only"),
    )
    epoch = probe.str.contains(_EPOCH_RE).fill_null(False)
    epoch_wall = pl.select(_epoch_to_wall(pl.lit(probe).cast(pl.Float64, strict=False))).to_series()
    result = parsed.with_columns(
        pl.when(pl.lit(epoch)).then(pl.lit(epoch_wall)).otherwise(pl.col("wall")).alias("wall"),
        pl.when(pl.lit(epoch)).then(pl.lit(0, pl.Int64)).otherwise(pl.col("offset")).alias("offset"),
        (pl.col("date_only") & pl.col("matched") & ~pl.lit(epoch)).alias("date_only"),
    )
    return _Stamp(
        wall=pl.lit(result["wall"]),
        offset=pl.lit(result["offset"]),
        date_only=pl.lit(result["date_only"]).fill_null(False),
    )


def _typed_stamp(frame: pl.DataFrame, column: str, time_column: str | None) -> _Stamp:
    """The timestamp column by type; string columns (and the time column) arrive trimmed, empty as null."""
    dtype = frame.schema[column]
    col = pl.col(column)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            utc_wall = col.dt.convert_time_zone("UTC").dt.replace_time_zone(None).cast(pl.Datetime("us"))
            return _Stamp(utc_wall, pl.lit(0, pl.Int64), pl.lit(False))
        return _Stamp(col.cast(pl.Datetime("us")), pl.lit(None, pl.Int64), pl.lit(False))
    if dtype == pl.Date:
        if time_column is None:
            return _Stamp(col.cast(pl.Datetime("us")), pl.lit(None, pl.Int64), pl.lit(True))
        text = col.cast(pl.String)
        time_text = pl.col(time_column)
        return _string_stamp(
            frame, pl.when(time_text.is_not_null()).then(pl.concat_str(text, time_text, separator=" ")).otherwise(text)
        )
    if dtype.is_numeric():
        return _Stamp(_epoch_to_wall(col.cast(pl.Float64)), pl.lit(0, pl.Int64), pl.lit(False))
    if _is_stringy(dtype):
        text = pl.col(column)
        if time_column is not None:
            time_text = pl.col(time_column)
            text = pl.when(time_text.is_not_null()).then(pl.concat_str(text, time_text, separator=" ")).otherwise(text)
        return _string_stamp(frame, text)
    raise LandingFileError(f"column {column!r} has type {dtype}, which holds no timestamps")


_TRUE = ("true", "t", "1", "yes", "y", "ya")
_FALSE = ("false", "f", "0", "no", "n", "tidak")


def _boolean(column: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Boolean:
        return pl.col(column)
    text = pl.col(column).str.to_lowercase()
    return pl.when(text.is_in(_TRUE)).then(True).when(text.is_in(_FALSE)).then(False)


def _zone_alias(name: str) -> str:
    return {"WIB": "Asia/Jakarta", "WITA": "Asia/Makassar", "WIT": "Asia/Jayapura"}.get(name.upper(), name)


def _check_zone(name: str, what: str) -> str:
    zone = _zone_alias(name.strip())
    try:
        zoneinfo.ZoneInfo(zone)
        pl.select(pl.lit(0).cast(pl.Datetime("us")).dt.replace_time_zone(zone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, pl.exceptions.PolarsError) as exc:
        raise LandingFileError(
            f"unknown time zone {name!r} {what}; use an IANA zone name such as Asia/Jakarta or America/New_York"
        ) from exc
    return zone


# --------------------------------------------------------------------------------------------------------------------
# Errors


def _malformed(frame: pl.DataFrame, problem: pl.Expr, what: str) -> None:
    """Raise LandingFileError listing the first rows where ``problem`` (a message or null) is set."""
    bad = frame.select(pl.col("_row"), problem.alias("_problem")).filter(pl.col("_problem").is_not_null())
    if bad.is_empty():
        return
    shown = "; ".join(f"row {row}: {message}" for row, message in bad.head(MAX_REPORTED_ROWS).iter_rows())
    more = f"; and {bad.height - MAX_REPORTED_ROWS} more" if bad.height > MAX_REPORTED_ROWS else ""
    rows = "row" if bad.height == 1 else "rows"
    raise LandingFileError(f"{bad.height} {what} {rows} (data rows numbered from 1 after the header): {shown}{more}")


def _msg(*parts: str | pl.Expr) -> pl.Expr:
    """A message built from literal text and column values (no format string: column names may hold braces)."""
    return pl.concat_str([part if isinstance(part, pl.Expr) else pl.lit(part) for part in parts], ignore_nulls=True)


# --------------------------------------------------------------------------------------------------------------------
# Parsing


def parse_file(path: Path, *, default_timezone: str = "Asia/Jakarta") -> ParsedFile:
    """Parse one landing file into canonical bars, or raise LandingFileError with the reason it is refused.

    ``default_timezone`` is the zone of naive timestamps when the file has no ``timezone`` column; an invalid
    ``default_timezone`` is a configuration error and raises a plain ValueError.
    """
    path = Path(path)
    try:
        default_zone = _check_zone(default_timezone, "(default_timezone)")
    except LandingFileError as exc:
        raise ValueError(exc.reason) from None
    raw, file_format = _read(path)
    if raw.width == 0 or raw.height == 0:
        raise LandingFileError("no data rows: the file has a header but no rows" if raw.width else "no columns")
    columns = _map_columns(raw.columns)
    role = columns.roles
    schema = raw.schema
    for r in _NUMBERS:
        if not (_is_stringy(schema[role[r]]) or _is_numeric(schema[role[r]])):
            raise LandingFileError(f"column {role[r]!r} has type {schema[role[r]]}, which holds no numbers")
    # Only the mapped columns matter; every text cell among them is trimmed once (empty -> null). The symbol, time,
    # timezone, timeframe and adjusted columns are read as text whatever their type (booleans stay booleans).
    as_text = {role[r] for r in ("symbol", "time", "timezone", "timeframe") if r in role}
    if "adjusted" in role and schema[role["adjusted"]] != pl.Boolean:
        as_text.add(role["adjusted"])
    used = list(dict.fromkeys(role.values()))
    text_columns = [c for c in used if _is_stringy(schema[c]) or c in as_text]
    raw = raw.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(_ROW),
        *(_clean(c).alias(c) if c in text_columns else pl.col(c) for c in used),
    )
    schema = raw.schema
    # Blank lines (every cell empty) are not rows.
    if len(text_columns) == len(used):
        raw = raw.filter(~pl.all_horizontal([pl.col(c).is_null() for c in used]))
    rows_in = raw.height
    if rows_in == 0:
        raise LandingFileError("no data rows: the file has a header but no rows")

    name_symbol, name_timeframe = symbol_and_timeframe_from_name(path)
    symbol_col = role.get("symbol")
    if symbol_col is None and name_symbol is None:
        raise LandingFileError(
            f"unknown symbol: the file has no symbol column and its name {path.name!r} does not name a symbol; "
            "name it <SYMBOL>.csv or <SYMBOL>_<timeframe>.csv (e.g. BBCA_1d.csv) or add a symbol column"
        )

    # ---- values -----------------------------------------------------------------------------------------------
    string_numbers = [role[r] for r in _NUMBERS if _is_stringy(schema[role[r]])]
    indonesian = _choose_number_format(raw, string_numbers, prefer_indonesian=columns.layout == "idx")
    number_of = _indonesian_number if indonesian else _plain_number

    def number(r: str) -> pl.Expr:
        c = role[r]
        return number_of(pl.col(c)) if _is_stringy(schema[c]) else pl.col(c).cast(pl.Float64)

    stamp = _typed_stamp(raw, role["timestamp"], role.get("time"))
    symbol = (
        pl.col(symbol_col).str.to_uppercase().str.replace(r"\.JK$", "")
        if symbol_col
        else pl.lit(name_symbol, pl.String)
    )
    adjusted_col = role.get("adjusted")
    zone_col = role.get("timezone")
    timeframe_col = role.get("timeframe")
    work = raw.select(
        pl.col(_ROW).alias("_row"),
        symbol.alias("symbol"),
        stamp.wall.alias("wall"),
        stamp.offset.alias("offset"),
        stamp.date_only.alias("date_only"),
        *(number(r).alias(r) for r in _NUMBERS),
        (_boolean(adjusted_col, schema[adjusted_col]) if adjusted_col else pl.lit(None, pl.Boolean)).alias(
            "adjusted_value"
        ),
        (pl.col(zone_col) if zone_col else pl.lit(None, pl.String)).alias("zone"),
        (pl.col(timeframe_col) if timeframe_col else pl.lit(None, pl.String)).alias("tf"),
        *(pl.col(role[r]).alias(f"raw_{r}") for r in ("timestamp", *_NUMBERS, "adjusted", "symbol") if r in role),
    )

    # ---- malformed rows ---------------------------------------------------------------------------------------
    def value(column: str) -> pl.Expr:
        return pl.col(column).cast(pl.String)

    checks: list[pl.Expr] = []
    if symbol_col:
        checks.append(pl.when(pl.col("raw_symbol").is_null()).then(_msg(f"{symbol_col} is empty")))
    ts_name = role["timestamp"] or "timestamp"
    checks.append(pl.when(pl.col("raw_timestamp").is_null()).then(_msg(f"{ts_name} is empty")))
    checks.append(
        pl.when(pl.col("wall").is_null()).then(
            _msg(f"{ts_name} '", value("raw_timestamp"), "' is not a valid date/time")
        )
    )
    for r in _NUMBERS:
        c = role[r]
        checks.append(pl.when(pl.col(f"raw_{r}").is_null()).then(_msg(f"{c} is empty")))
        checks.append(pl.when(pl.col(r).is_null()).then(_msg(f"{c} '", value(f"raw_{r}"), "' is not a number")))
        checks.append(pl.when(~pl.col(r).is_finite()).then(_msg(f"{c} is ", value(r))))
    for r in _PRICES:
        checks.append(pl.when(pl.col(r) <= 0).then(_msg(f"{role[r]} ", value(r), " is not a positive price")))
    checks.append(pl.when(pl.col("volume") < 0).then(_msg(f"{role['volume']} ", value("volume"), " is negative")))
    low, high = role["low"], role["high"]
    checks.append(
        pl.when(pl.col("low") > pl.col("high")).then(_msg(f"{low} ", value("low"), f" > {high} ", value("high")))
    )
    for r in ("open", "close"):
        outside = (pl.col(r) < pl.col("low")) | (pl.col(r) > pl.col("high"))
        checks.append(
            pl.when(outside).then(
                _msg(f"{role[r]} ", value(r), f" outside [{low} ", value("low"), f", {high} ", value("high"), "]")
            )
        )
    if adjusted_col:
        checks.append(
            pl.when(pl.col("raw_adjusted").is_not_null() & pl.col("adjusted_value").is_null()).then(
                _msg(f"{adjusted_col} '", value("raw_adjusted"), "' is not true/false")
            )
        )
    _malformed(work, pl.coalesce(checks), "malformed")

    # ---- file-level facts -------------------------------------------------------------------------------------
    aware = work["offset"].is_not_null()
    if aware.any() and not aware.all():
        first_naive = work.filter(pl.col("offset").is_null())["_row"][0]
        first_aware = work.filter(pl.col("offset").is_not_null())["_row"][0]
        raise LandingFileError(
            "timestamps mix absolute times (with a UTC offset) and local times without an offset "
            f"(e.g. row {first_aware} and row {first_naive}); use one form per file"
        )
    zones = work["zone"].drop_nulls().unique().sort().to_list()
    if len(zones) > 1:
        raise LandingFileError(f"the {zone_col} column names several time zones ({', '.join(zones)}); one per file")
    zone = _check_zone(zones[0], f"in the {zone_col} column") if zones else default_zone

    date_only = work["date_only"]
    if date_only.any() and not date_only.all():
        raise LandingFileError(
            "timestamps mix dates without a time (daily bars) and times of day: several timeframes in one file"
        )
    # Daily-like: dates without a time, or local timestamps that are all at midnight (a pandas daily index).
    all_dates = bool(date_only.all()) or (
        not aware.any() and bool(work.select((pl.col("wall") == pl.col("wall").dt.truncate("1d")).all()).item())
    )

    adjusted_values = work["adjusted_value"].drop_nulls().unique().to_list()
    if len(adjusted_values) > 1:
        raise LandingFileError(f"the {adjusted_col} column mixes adjusted and unadjusted rows; one kind per file")
    name_adjusted = _adjusted_from_name(path)
    if adjusted_values and name_adjusted and not adjusted_values[0]:
        raise LandingFileError(f"the file name says adjusted (_adj) but the {adjusted_col} column says false")
    adjusted = name_adjusted or bool(adjusted_values and adjusted_values[0])

    named = name_timeframe
    column_timeframes = work["tf"].drop_nulls().unique().sort().to_list()
    if column_timeframes:
        parsed = {value: parse_timeframe_token(value) for value in column_timeframes}
        unknown = [value for value, tf in parsed.items() if tf is None]
        if unknown:
            raise LandingFileError(f"the {timeframe_col} column has unknown timeframes: {', '.join(unknown)}")
        distinct = sorted({tf.value for tf in parsed.values() if tf is not None})
        if len(distinct) > 1:
            raise LandingFileError(f"several timeframes in one file ({', '.join(distinct)}); one timeframe per file")
        from_column = Timeframe(distinct[0])
        if named is not None and named != from_column:
            raise LandingFileError(
                f"the file name says {named.value} but the {timeframe_col} column says {from_column.value}"
            )
        named = from_column

    # ---- UTC --------------------------------------------------------------------------------------------------
    if aware.all():
        utc = (pl.col("wall") - pl.duration(minutes=pl.col("offset"))).dt.replace_time_zone("UTC")
        used_zone: str | None = None
    else:
        earliest = pl.col("wall").dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
        latest = pl.col("wall").dt.replace_time_zone(zone, ambiguous="latest", non_existent="null")
        utc = earliest.dt.convert_time_zone("UTC")
        if work.select((earliest != latest).any()).item():
            # A wall-clock hour that occurs twice (autumn DST): exact repeats go first, then a symbol's first
            # occurrence is the earlier instant and its second the later one.
            work = work.unique(
                subset=["symbol", "wall", *_NUMBERS, "adjusted_value"], keep="first", maintain_order=True
            )
            occurrence = pl.int_range(pl.len()).over("symbol", "wall")
            utc = pl.when(occurrence == 0).then(utc).otherwise(latest.dt.convert_time_zone("UTC"))
        used_zone = zone
    work = work.with_columns(utc.alias("ts"))
    _malformed(
        work,
        pl.when(pl.col("ts").is_null()).then(
            _msg(
                "local time ",
                pl.col("wall").dt.strftime("%Y-%m-%d %H:%M:%S"),
                f" does not exist in {zone} (daylight-saving gap)",
            )
        ),
        "malformed",
    )
    work = work.sort("symbol", "ts", maintain_order=True)
    repeated = (pl.col("symbol") == pl.col("symbol").shift(1)) & (pl.col("ts") == pl.col("ts").shift(1))
    if work.select(repeated.any()).item():
        work = work.unique(subset=["symbol", "ts", *_NUMBERS, "adjusted_value"], keep="first", maintain_order=True)
        _refuse_conflicts(work)
    duplicates_dropped = rows_in - work.height

    # ---- timeframe --------------------------------------------------------------------------------------------
    timeframe = _resolve_timeframe(work, named, all_dates, path)

    frame = work.select(
        "symbol",
        pl.lit(timeframe.value).alias("timeframe"),
        "ts",
        *_NUMBERS,
        pl.lit(adjusted).alias("adjusted"),
    )
    try:
        frame = conform(frame)
    except BarFrameError as exc:  # pragma: no cover - every column is built with its canonical type above
        raise LandingFileError(f"internal: the parsed frame is not canonical: {exc}") from exc
    return ParsedFile(
        frame=frame,
        symbols=tuple(sorted(frame["symbol"].unique().to_list())),
        timeframe=timeframe,
        adjusted=adjusted,
        rows_in=rows_in,
        duplicates_dropped=duplicates_dropped,
        layout=columns.layout,
        file_format=file_format,
        timezone=used_zone,
    )


def _refuse_conflicts(work: pl.DataFrame) -> None:
    """Raise if a symbol and bar start still occur twice (after exact repeats were dropped): different values."""
    conflicts = (
        work.filter(pl.struct("symbol", "ts").is_duplicated())
        .group_by("symbol", "ts")
        .agg(pl.col("_row").sort())
        .sort(pl.col("_row").list.first())
    )
    if conflicts.is_empty():
        return
    shown = "; ".join(
        f"rows {', '.join(map(str, rows))} ({sym} {ts:%Y-%m-%d %H:%M} UTC)"
        for sym, ts, rows in conflicts.head(MAX_REPORTED_ROWS).iter_rows()
    )
    more = f"; and {conflicts.height - MAX_REPORTED_ROWS} more" if conflicts.height > MAX_REPORTED_ROWS else ""
    bars = "bar" if conflicts.height == 1 else "bars"
    raise LandingFileError(
        f"{conflicts.height} conflicting duplicate {bars} (the same symbol and time with different values): "
        f"{shown}{more}"
    )


def _resolve_timeframe(work: pl.DataFrame, named: Timeframe | None, all_dates: bool, path: Path) -> Timeframe:
    """The file's timeframe from its name (checked against the data) or inferred; ``work`` sorted, no repeats."""
    stats = _gap_stats(work, "ts", "symbol", prepared=True)
    per_symbol: dict[str, Timeframe | None] = {}
    for sym, mode_us, _ in stats.iter_rows():
        per_symbol[sym] = _timeframe_for_gap(mode_us / _US_PER_S)
    if named is not None:
        if all_dates and named.seconds < _DAY_S:
            raise LandingFileError(
                f"the file is named {named.value} but its timestamps are dates without a time (daily or longer bars)"
            )
        lowest = _MIN_GAP_S[named]
        for sym, mode_us, min_us in stats.iter_rows():
            if min_us / _US_PER_S < lowest:
                raise LandingFileError(
                    f"the file is named {named.value} but {sym} has bars only {_human_seconds(min_us / _US_PER_S)} "
                    "apart: the data contradicts the named timeframe"
                )
            inferred = per_symbol[sym]
            if inferred is not None and inferred != named:
                raise LandingFileError(
                    f"the file is named {named.value} but {sym}'s bars are mostly "
                    f"{_human_seconds(mode_us / _US_PER_S)} apart ({inferred.value}): the data contradicts the "
                    "named timeframe"
                )
        return named
    if stats.is_empty():
        if all_dates:
            return Timeframe.d1
        raise LandingFileError(
            "cannot infer the timeframe: every symbol has a single bar and the timestamps have times of day; "
            f"name the timeframe in the file name (e.g. {path.stem}_1m{path.suffix or '.csv'})"
        )
    unknown = [(sym, mode_us) for sym, mode_us, _ in stats.iter_rows() if per_symbol[sym] is None]
    if unknown:
        sym, mode_us = unknown[0]
        raise _no_timeframe_for_gap(mode_us / _US_PER_S, f" for {sym}")
    found = sorted({tf for tf in per_symbol.values() if tf is not None}, key=lambda tf: tf.seconds)
    if len(found) > 1:
        examples = ", ".join(
            f"{sym} {tf.value}" for tf in found for sym in [next(s for s, t in per_symbol.items() if t == tf)]
        )
        raise LandingFileError(f"several timeframes in one file ({examples}); one timeframe per file")
    timeframe = found[0]
    if all_dates and timeframe.seconds < _DAY_S:  # pragma: no cover - gaps between dates are whole days
        raise LandingFileError("dates without times cannot be intraday bars")
    return timeframe
