"""Market data: reference data, bundled, synthetic and landing bars, their checks, jobs, schedules and sensor."""

from __future__ import annotations

from orchestration.defs.market.assets import bundled_bars, instruments, landing_bars, synthetic_bars
from orchestration.defs.market.schedules import jobs, schedules
from orchestration.defs.market.sensors import sensors

assets = [instruments, bundled_bars, synthetic_bars, landing_bars]

__all__ = ["assets", "jobs", "schedules", "sensors"]
