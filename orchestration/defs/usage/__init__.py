"""Usage: the daily rollup of usage events, its job and schedule."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.usage.assets import usage_daily

usage_job = dg.define_asset_job(
    "usage_job",
    selection=dg.AssetSelection.groups("usage"),
    description="Roll one UTC day of usage events up to usage.daily.",
)

# 00:30 UTC every day, for the day that just ended.
usage_daily_schedule = dg.build_schedule_from_partitioned_job(
    usage_job, name="usage_daily_schedule", hour_of_day=0, minute_of_hour=30
)

assets = [usage_daily]
jobs = [usage_job]
schedules = [usage_daily_schedule]
sensors: list[dg.SensorDefinition] = []

__all__ = ["assets", "jobs", "schedules", "sensors"]
