"""Exchange rules and calendars: IDX tick tiers, auto-rejection bands, sessions, holidays, instruments."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from importlib import resources
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from pasar.market import exchange
from pasar.market.exchange import (
    InstrumentSpec,
    Session,
    auto_rejection_limits,
    calendar,
    default_instrument,
    on_tick_grid,
    round_to_tick,
    tick_size,
)
from pasar.market.frames import Timeframe

WIB = ZoneInfo("Asia/Jakarta")
D = Decimal


def wib(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=WIB)


MONDAY = date(2026, 1, 5)
FRIDAY = date(2026, 1, 9)
SATURDAY = date(2026, 1, 10)
HOLIDAY = date(2026, 1, 16)  # Isra Mikraj, a Friday


# Tick sizes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        ("1", "1"),
        ("50", "1"),
        ("199", "1"),
        ("199.5", "1"),
        ("200", "2"),
        ("499", "2"),
        ("500", "5"),
        ("1999", "5"),
        ("2000", "10"),
        ("4999", "10"),
        ("5000", "25"),
        ("100000", "25"),
    ],
)
def test_idx_tick_tiers_at_every_boundary(price: str, tick: str) -> None:
    assert tick_size(D(price), "idx_equity") == D(tick)


def test_decimal_rules_are_fixed_grids() -> None:
    assert tick_size(D("1.2345"), "decimal:4") == D("0.0001")
    assert tick_size(D("64000"), "decimal:2") == D("0.01")
    assert tick_size(D("3"), "decimal:0") == D("1")
    assert tick_size(D("-1.5"), "decimal:5") == D("0.00001")  # a decimal grid admits any sign


@pytest.mark.parametrize(
    ("price", "rule", "expected"),
    [
        ("199", "idx_equity", True),
        ("200", "idx_equity", True),
        ("201", "idx_equity", False),
        ("498", "idx_equity", True),
        ("499", "idx_equity", False),
        ("500", "idx_equity", True),
        ("502", "idx_equity", False),
        ("1995", "idx_equity", True),
        ("1999", "idx_equity", False),
        ("2000", "idx_equity", True),
        ("2005", "idx_equity", False),
        ("4990", "idx_equity", True),
        ("4999", "idx_equity", False),
        ("5000", "idx_equity", True),
        ("5010", "idx_equity", False),
        ("5025", "idx_equity", True),
        ("150.5", "idx_equity", False),
        ("1.23", "decimal:2", True),
        ("1.230000", "decimal:2", True),
        ("1.235", "decimal:2", False),
        ("1.08451", "decimal:5", True),
    ],
)
def test_on_tick_grid(price: str, rule: str, expected: bool) -> None:
    assert on_tick_grid(D(price), rule) is expected


@pytest.mark.parametrize(
    ("price", "down", "up", "nearest"),
    [
        ("201", "200", "202", "202"),  # a tie goes up
        ("199.4", "199", "200", "199"),
        ("499", "498", "500", "500"),  # up from below a tier boundary lands on the boundary
        ("501", "500", "505", "500"),
        ("1999", "1995", "2000", "2000"),
        ("2001", "2000", "2010", "2000"),
        ("4999", "4990", "5000", "5000"),
        ("5010", "5000", "5025", "5000"),
        ("5013", "5000", "5025", "5025"),
        ("5025", "5025", "5025", "5025"),
        ("7", "7", "7", "7"),
    ],
)
def test_round_to_tick_idx_modes(price: str, down: str, up: str, nearest: str) -> None:
    assert round_to_tick(D(price), "idx_equity", "down") == D(down)
    assert round_to_tick(D(price), "idx_equity", "up") == D(up)
    assert round_to_tick(D(price), "idx_equity", "nearest") == D(nearest)


def test_round_to_tick_decimal_modes_and_representation() -> None:
    assert round_to_tick(D("1.234"), "decimal:2", "down") == D("1.23")
    assert round_to_tick(D("1.234"), "decimal:2", "up") == D("1.24")
    assert round_to_tick(D("1.235"), "decimal:2", "nearest") == D("1.24")
    assert round_to_tick(D("-1.235"), "decimal:2", "down") == D("-1.24")
    assert round_to_tick(D("-1.235"), "decimal:2", "up") == D("-1.23")
    assert str(round_to_tick(D("1.2"), "decimal:2", "down")) == "1.20"  # quantized to the rule's decimals
    assert str(round_to_tick(D("1234.6"), "idx_equity")) == "1235"
    assert isinstance(round_to_tick(D("1234.6"), "idx_equity"), Decimal)


def test_rounding_brackets_every_price_with_adjacent_grid_prices() -> None:
    prices = [D(p) for p in range(1, 12_000)] + [D(p) + D("0.5") for p in range(1, 6_000, 7)]
    for price in prices:
        down = round_to_tick(price, "idx_equity", "down")
        up = round_to_tick(price, "idx_equity", "up")
        assert down <= price <= up
        assert on_tick_grid(down, "idx_equity")
        assert on_tick_grid(up, "idx_equity")
        assert up - down <= tick_size(price, "idx_equity")
        assert round_to_tick(price, "idx_equity", "nearest") in (down, up)


def test_tick_functions_refuse_bad_input() -> None:
    with pytest.raises(TypeError):
        tick_size(1.5, "idx_equity")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="below"):
        tick_size(D(-1), "idx_equity")
    with pytest.raises(ValueError, match="finite"):
        on_tick_grid(D("NaN"), "decimal:2")
    for bad in ("decimal:9", "decimal:x", "idx", ""):
        with pytest.raises(ValueError, match="unknown tick rule"):
            tick_size(D(1), bad)
    with pytest.raises(ValueError, match="rounding mode"):
        round_to_tick(D(1), "idx_equity", "sideways")  # type: ignore[arg-type]


def test_vectorised_rounding_matches_decimal() -> None:
    prices = np.arange(1.0, 12_000.0, 0.25)
    for mode in ("down", "up"):
        got = exchange.idx_round_to_tick_array(prices, mode)
        want = [float(round_to_tick(D(str(p)), "idx_equity", mode)) for p in prices[::37]]
        assert got[::37].tolist() == want
    ticks = exchange.idx_tick_size_array(np.array([199.0, 200.0, 499.0, 500.0, 1999.0, 2000.0, 4999.0, 5000.0]))
    assert ticks.tolist() == [1, 2, 2, 5, 5, 10, 10, 25]


# Auto-rejection --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "lower", "upper"),
    [
        ("50", "50", "67"),  # 32.5 floors at the regular-board minimum; 67.5 rounds down
        ("100", "65", "135"),
        ("200", "130", "270"),  # 200 is still in the 35% band
        ("202", "152", "252"),  # above 200: 25%; 151.5 rounds up, 252.5 rounds down (tick 2)
        ("1000", "750", "1250"),
        ("5000", "3750", "6250"),  # 5000 is still in the 25% band
        ("5025", "4020", "6025"),  # above 5000: 20%; 6030 rounds down to the 25 grid
        ("10000", "8000", "12000"),
    ],
)
def test_auto_rejection_limits_at_band_boundaries(reference: str, lower: str, upper: str) -> None:
    assert auto_rejection_limits(D(reference), "idx_equity") == (D(lower), D(upper))


def test_auto_rejection_limits_are_inward_and_on_grid() -> None:
    for value in [*range(50, 6_000, 3), *range(6_000, 60_000, 97)]:
        reference = D(value)
        limits = auto_rejection_limits(reference, "idx_equity")
        assert limits is not None
        lower, upper = limits
        fraction = D("0.35") if reference <= 200 else D("0.25") if reference <= 5000 else D("0.20")
        assert on_tick_grid(lower, "idx_equity")
        assert on_tick_grid(upper, "idx_equity")
        assert lower >= max(reference * (1 - fraction), D(50))
        assert upper <= reference * (1 + fraction)
        assert lower <= reference <= upper


def test_vectorised_auto_rejection_matches_decimal() -> None:
    references = np.array([*range(50, 20_000), *range(20_000, 200_000, 113)], dtype=np.int64)
    lower, upper = exchange.idx_auto_rejection_limits_array(references)
    for i in range(0, len(references), 7):
        assert (D(int(lower[i])), D(int(upper[i]))) == auto_rejection_limits(D(int(references[i])), "idx_equity")


def test_auto_rejection_table_can_be_asymmetric() -> None:
    """IDX's rule since 8 April 2025 (ARB 15% everywhere) is a data change: a band has an up and a down fraction."""
    bands = tuple((highest, up, D("0.15")) for highest, up, _ in exchange.IDX_AUTO_REJECTION_BANDS)
    rule = exchange.TickRule("idx_equity", exchange.IDX_TICK_TIERS, 0, D(0), bands)
    assert auto_rejection_limits(D(1000), rule) == (D(850), D(1250))
    assert auto_rejection_limits(D(100), rule) == (D(85), D(135))


def test_auto_rejection_outside_idx() -> None:
    assert auto_rejection_limits(D("1.08"), "decimal:5") is None  # no exchange-imposed band
    with pytest.raises(ValueError, match="minimum"):
        auto_rejection_limits(D(49), "idx_equity")
    with pytest.raises(ValueError, match="minimum"):
        exchange.idx_auto_rejection_limits_array(np.array([49]))


# Calendars -------------------------------------------------------------------------------------------------


def test_idx_friday_session_layout() -> None:
    idx = calendar("IDX")
    assert idx.sessions_on(FRIDAY) == (Session(time(9), time(11, 30)), Session(time(14), time(15, 50)))
    assert idx.is_open(wib(FRIDAY, 11, 29, 59))
    assert not idx.is_open(wib(FRIDAY, 11, 30))
    assert not idx.is_open(wib(FRIDAY, 13, 30))  # Monday-Thursday's afternoon start, not Friday's
    assert not idx.is_open(wib(FRIDAY, 13, 59, 59))
    assert idx.is_open(wib(FRIDAY, 14))
    assert idx.session_seconds(FRIDAY) == (150 + 110) * 60


def test_idx_lunch_break_auctions_and_night_are_closed() -> None:
    idx = calendar("IDX")
    assert not idx.is_open(wib(MONDAY, 8, 59, 59))  # pre-opening auction
    assert idx.is_open(wib(MONDAY, 9))
    assert idx.is_open(wib(MONDAY, 11, 59, 59))
    assert not idx.is_open(wib(MONDAY, 12))
    assert not idx.is_open(wib(MONDAY, 13, 29, 59))
    assert idx.is_open(wib(MONDAY, 13, 30))
    assert idx.is_open(wib(MONDAY, 15, 49, 59))
    assert not idx.is_open(wib(MONDAY, 15, 50))  # pre-closing / closing auction
    assert not idx.is_open(wib(MONDAY, 20))


def test_idx_holidays_and_weekends_are_closed() -> None:
    idx = calendar("IDX")
    assert not idx.is_trading_day(HOLIDAY)
    assert not idx.is_open(wib(HOLIDAY, 10))
    assert idx.bar_starts(HOLIDAY, Timeframe.m1) == []
    assert not idx.is_trading_day(SATURDAY)
    assert not idx.is_open(wib(SATURDAY, 10))
    assert idx.session_position(wib(SATURDAY, 10)) is None
    assert idx.trading_days(date(2026, 1, 1), date(2026, 1, 9)) == [date(2026, 1, d) for d in (2, 5, 6, 7, 8, 9)]
    assert idx.trading_days(MONDAY, MONDAY) == [MONDAY]
    assert idx.trading_days(FRIDAY, MONDAY) == []
    assert idx.next_trading_day(date(2026, 1, 15)) == date(2026, 1, 19)
    assert idx.previous_trading_day(date(2026, 1, 19)) == date(2026, 1, 15)


def test_idx_trading_day_counts_match_the_exchange() -> None:
    idx = calendar("IDX")
    counts = {year: len(idx.trading_days(date(year, 1, 1), date(year, 12, 31))) for year in (2024, 2025, 2026)}
    assert counts == {2024: 237, 2025: 236, 2026: 239}  # 2026 and 2025 as IDX published them


def test_idx_one_minute_bars_of_a_monday_and_a_friday() -> None:
    idx = calendar("IDX")
    monday = idx.bar_starts(MONDAY, Timeframe.m1)
    assert len(monday) == 180 + 140 == 320
    assert monday[0] == datetime(2026, 1, 5, 2, 0, tzinfo=UTC)  # 09:00 WIB
    assert monday[-1] == wib(MONDAY, 15, 49).astimezone(UTC)
    assert all(idx.is_open(ts) for ts in monday)
    assert all(ts.tzinfo is UTC for ts in monday)
    assert monday == sorted(set(monday))
    friday = idx.bar_starts(FRIDAY, Timeframe.m1)
    assert len(friday) == 150 + 110 == 260
    assert wib(FRIDAY, 11, 29) in friday
    assert wib(FRIDAY, 11, 30) not in friday
    assert friday[friday.index(wib(FRIDAY, 11, 29)) + 1] == wib(FRIDAY, 14)


def test_idx_coarser_intraday_bars_are_clock_aligned() -> None:
    idx = calendar("IDX")
    assert len(idx.bar_starts(MONDAY, Timeframe.m5)) == 36 + 28
    assert len(idx.bar_starts(MONDAY, Timeframe.m30)) == 6 + 5  # 15:30 bar covers 15:30-15:50
    hours = [ts.astimezone(WIB).time() for ts in idx.bar_starts(MONDAY, Timeframe.h1)]
    assert hours == [time(9), time(10), time(11), time(13), time(14), time(15)]  # 13:00 carries 13:30-14:00
    hours = [ts.astimezone(WIB).time() for ts in idx.bar_starts(FRIDAY, Timeframe.h1)]
    assert hours == [time(9), time(10), time(11), time(14), time(15)]


def test_daily_weekly_monthly_bar_convention() -> None:
    idx = calendar("IDX")
    assert idx.bar_starts(MONDAY, Timeframe.d1) == [datetime(2026, 1, 4, 17, 0, tzinfo=UTC)]  # 00:00 WIB
    assert idx.local_midnight_utc(MONDAY) == wib(MONDAY, 0)
    assert idx.bar_starts(MONDAY, Timeframe.w1) == [wib(MONDAY, 0)]
    assert idx.bar_starts(date(2026, 1, 6), Timeframe.w1) == []
    # Monday 16 and Tuesday 17 February 2026 are holidays: the week's bar belongs to Wednesday, dated Monday.
    assert idx.bar_starts(date(2026, 2, 18), Timeframe.w1) == [wib(date(2026, 2, 16), 0)]
    # 1 January is a holiday: the month's bar belongs to Friday 2 January, dated the 1st.
    assert idx.bar_starts(date(2026, 1, 2), Timeframe.mo1) == [wib(date(2026, 1, 1), 0)]
    assert idx.bar_starts(MONDAY, Timeframe.mo1) == []
    xnas = calendar("XNAS")
    assert xnas.bar_starts(date(2026, 7, 6), Timeframe.d1) == [datetime(2026, 7, 6, 4, 0, tzinfo=UTC)]  # EDT


def test_session_position_bounds() -> None:
    idx = calendar("IDX")
    assert idx.session_position(wib(MONDAY, 9)) == 0.0
    assert idx.session_position(wib(MONDAY, 13, 30)) == pytest.approx(180 / 320)
    assert idx.session_position(wib(MONDAY, 15, 49)) == pytest.approx(319 / 320)
    assert idx.session_position(wib(MONDAY, 12, 30)) is None
    assert idx.session_position(wib(MONDAY, 15, 50)) is None
    assert idx.session_position(wib(MONDAY, 8)) is None
    assert idx.session_position(wib(HOLIDAY, 10)) is None
    positions = []
    moment = wib(MONDAY, 0)
    while moment < wib(MONDAY, 23, 59):
        position = idx.session_position(moment)
        assert (position is not None) == idx.is_open(moment)
        if position is not None:
            positions.append(position)
        moment += timedelta(minutes=1)
    assert len(positions) == 320
    assert positions == sorted(positions)
    assert min(positions) >= 0.0 and max(positions) < 1.0


def test_timezones() -> None:
    idx = calendar("IDX")
    assert wib(MONDAY, 9) == datetime(2026, 1, 5, 2, 0, tzinfo=UTC)  # 09:00 WIB == 02:00 UTC
    assert idx.is_open(datetime(2026, 1, 5, 2, 0, tzinfo=UTC))
    assert not idx.is_open(datetime(2026, 1, 5, 1, 59, tzinfo=UTC))
    assert idx.is_open(datetime(2026, 1, 5, 11, 0, tzinfo=ZoneInfo("Asia/Singapore")))  # 10:00 WIB
    with pytest.raises(ValueError, match="timezone-aware"):
        idx.is_open(datetime(2026, 1, 5, 9, 0))
    xnas = calendar("XNAS")
    assert xnas.is_open(datetime(2026, 1, 5, 14, 30, tzinfo=UTC))  # 09:30 EST
    assert not xnas.is_open(datetime(2026, 1, 5, 13, 30, tzinfo=UTC))
    assert xnas.is_open(datetime(2026, 7, 6, 13, 30, tzinfo=UTC))  # 09:30 EDT
    assert len(xnas.bar_starts(date(2026, 7, 6), Timeframe.m1)) == 390
    assert xnas.holidays == frozenset()


def test_fx_and_crypto_calendars() -> None:
    fx, crypto = calendar("FX"), calendar("CRYPTO")
    assert fx.timezone == ZoneInfo("UTC")
    assert fx.is_open(datetime(2026, 1, 5, 0, 0, tzinfo=UTC))
    assert fx.is_open(datetime(2026, 1, 9, 20, 59, 59, tzinfo=UTC))  # Friday, before the New York close
    assert not fx.is_open(datetime(2026, 1, 9, 21, 0, tzinfo=UTC))
    assert not fx.is_open(datetime(2026, 1, 10, 12, 0, tzinfo=UTC))  # Saturday
    assert not fx.is_open(datetime(2026, 1, 11, 20, 59, tzinfo=UTC))
    assert fx.is_open(datetime(2026, 1, 11, 21, 0, tzinfo=UTC))  # Sunday, the Sydney open
    assert len(fx.bar_starts(MONDAY, Timeframe.m1)) == 1440
    assert fx.session_position(datetime(2026, 1, 5, 12, 0, tzinfo=UTC)) == 0.5
    assert fx.sessions_on(MONDAY) == (Session(time(0), time(0)),)  # end 00:00 means 24:00
    assert Session(time(0), time(0)).seconds == 86_400
    assert crypto.is_open(datetime(2026, 1, 11, 3, 0, tzinfo=UTC))  # a Sunday
    assert len(crypto.bar_starts(SATURDAY, Timeframe.h1)) == 24


def test_calendar_lookup_and_validation() -> None:
    assert set(exchange.CALENDAR_CODES) == {"IDX", "XNAS", "FX", "CRYPTO"}
    assert calendar("IDX") is calendar("IDX")
    with pytest.raises(ValueError, match="unknown trading calendar"):
        calendar("XLON")
    with pytest.raises(ValueError, match="ends at or before"):
        Session(time(12), time(9))


# Shipped data ----------------------------------------------------------------------------------------------

IDX_SYMBOLS = [
    "BBCA",
    "BBRI",
    "BMRI",
    "BBNI",
    "TLKM",
    "ASII",
    "UNVR",
    "ICBP",
    "INDF",
    "GOTO",
    "ADRO",
    "ANTM",
    "PGAS",
    "PTBA",
    "KLBF",
    "CPIN",
    "SMGR",
    "UNTR",
    "MDKA",
    "AMRT",
    "BRPT",
    "TPIA",
    "INCO",
    "ITMG",
    "EXCL",
    "ISAT",
    "MEDC",
    "AKRA",
    "JSMR",
    "BBTN",
]


def test_reference_instruments_load_and_are_valid() -> None:
    specs = exchange.reference_instruments()
    by_symbol = {spec.symbol: spec for spec in specs}
    assert len(by_symbol) == len(specs) == 33
    for symbol in IDX_SYMBOLS:
        spec = by_symbol[symbol]
        assert (spec.exchange, spec.asset_class, spec.currency, spec.lot_size) == ("IDX", "equity", "IDR", 100)
        assert (spec.price_precision, spec.tick_rule, spec.calendar, spec.allows_short) == (
            0,
            "idx_equity",
            "IDX",
            False,
        )
        assert spec.name.endswith("Tbk") or "Tbk (" in spec.name
    goog, eurusd, btcusd = by_symbol["GOOG"], by_symbol["EURUSD"], by_symbol["BTCUSD"]
    assert (goog.exchange, goog.currency, goog.lot_size, goog.price_precision, goog.tick_rule) == (
        "XNAS",
        "USD",
        1,
        2,
        "decimal:2",
    )
    assert (goog.asset_class, goog.calendar, goog.allows_short) == ("equity", "XNAS", True)
    assert (eurusd.asset_class, eurusd.currency, eurusd.price_precision, eurusd.tick_rule, eurusd.calendar) == (
        "fx",
        "USD",
        5,
        "decimal:5",
        "FX",
    )
    assert (btcusd.asset_class, btcusd.price_precision, btcusd.tick_rule, btcusd.calendar) == (
        "crypto",
        2,
        "decimal:2",
        "CRYPTO",
    )
    for spec in specs:
        assert spec.trading_calendar().code == spec.calendar
        assert spec.rule.name == spec.tick_rule
    assert exchange.reference_instrument("BBCA") == by_symbol["BBCA"]
    assert exchange.reference_instrument("NOPE") is None


def test_reference_holidays() -> None:
    rows = exchange.reference_holidays()
    assert rows == sorted(rows)
    assert {calendar_code for calendar_code, _, _ in rows} == {"IDX"}
    assert all(day.weekday() < 5 and 2024 <= day.year <= 2026 and name for _, day, name in rows)
    assert ("IDX", HOLIDAY, "Isra Mikraj Nabi Muhammad SAW") in rows
    assert calendar("IDX").holidays == frozenset(day for _, day, _ in rows)
    header = resources.files("pasar.market").joinpath("data").joinpath("holidays.csv").read_text().splitlines()[0]
    assert header.startswith("#")
    assert "REFRESHED YEARLY" in header.upper()


def test_default_instrument() -> None:
    assert default_instrument("BBCA") == exchange.reference_instrument("BBCA")
    idx = default_instrument("WXYZ")
    assert (idx.exchange, idx.currency, idx.lot_size, idx.tick_rule, idx.calendar, idx.allows_short) == (
        "IDX",
        "IDR",
        100,
        "idx_equity",
        "IDX",
        False,
    )
    other = default_instrument("BTC-USD")
    assert (other.exchange, other.price_precision, other.tick_rule, other.calendar, other.allows_short) == (
        "OTHER",
        4,
        "decimal:4",
        "CRYPTO",
        True,
    )
    assert default_instrument("ABCDE").exchange == "OTHER"
    with pytest.raises(ValueError, match="symbol"):
        default_instrument("bbca")


def test_instrument_spec_validation() -> None:
    good = InstrumentSpec("TEST", "Test", "IDX", "equity", "IDR", 100, 0, "idx_equity", "IDX", False)
    assert good.lot_size == 100
    with pytest.raises(ValueError, match="currency"):
        InstrumentSpec("TEST", "Test", "IDX", "equity", "rupiah", 100, 0, "idx_equity", "IDX", False)
    with pytest.raises(ValueError, match="lot_size"):
        InstrumentSpec("TEST", "Test", "IDX", "equity", "IDR", 0, 0, "idx_equity", "IDX", False)
    with pytest.raises(ValueError, match="finer than"):
        InstrumentSpec("TEST", "Test", "FX", "fx", "USD", 1, 2, "decimal:5", "FX", True)
    with pytest.raises(ValueError, match="asset_class"):
        InstrumentSpec("TEST", "Test", "IDX", "bond", "IDR", 100, 0, "idx_equity", "IDX", False)
    with pytest.raises(ValueError, match="calendar"):
        InstrumentSpec("TEST", "Test", "IDX", "equity", "IDR", 100, 0, "idx_equity", "XLON", False)
