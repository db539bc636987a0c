"""The weekly retraining of the signal model (stopped until an operator turns it on, like every schedule)."""

import dagster as dg

from orchestration.partitions import IDX_TIMEZONE

signal_training_job = dg.define_asset_job(
    "signal_training_job",
    selection=dg.AssetSelection.groups("ml"),
    description="Features → AutoML → evaluation and backtest → ONNX export → registration (and promotion if it wins).",
)

# Saturdays 06:00 WIB: the week's bars are in (the IDX closes Friday 16:00 WIB); a better model is served by Monday.
signal_weekly_schedule = dg.ScheduleDefinition(
    name="signal_weekly_schedule",
    job=signal_training_job,
    cron_schedule="0 6 * * 6",
    execution_timezone=IDX_TIMEZONE,
    description="Saturdays 06:00 WIB: retrain the signal model on the stored bars; promote only if it beats the "
    "champion.",
)

jobs = [signal_training_job]
schedules = [signal_weekly_schedule]
