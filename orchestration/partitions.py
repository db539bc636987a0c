"""Every partitioning of the Dagster layer, declared once."""

from __future__ import annotations

import dagster as dg

from pasar.market.sources.bundled import BUNDLED_SYMBOLS
from pasar.market.sources.synthetic import DEFAULT_START

IDX_TIMEZONE = "Asia/Jakarta"  # WIB: the venue's clock for partitions and schedules

# One partition per IDX calendar day (the asset loads nothing on weekends and holidays); days end at midnight WIB.
synthetic_daily = dg.DailyPartitionsDefinition(
    start_date=DEFAULT_START.isoformat(), timezone=IDX_TIMEZONE, end_offset=0
)

# One partition per series the backtesting package ships (GOOG, EURUSD, BTCUSD).
bundled_symbols = dg.StaticPartitionsDefinition(list(BUNDLED_SYMBOLS))

# Usage events are rolled up per UTC day.
usage_daily = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC", end_offset=0)
