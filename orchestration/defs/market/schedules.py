"""Jobs of the market assets and a schedule per source (all stopped until an operator turns them on)."""

import dagster as dg

from orchestration import partitions
from orchestration.defs.market.assets import bundled_bars, instruments, landing_bars, synthetic_bars

instruments_job = dg.define_asset_job(
    "instruments_job", selection=dg.AssetSelection.assets(instruments), description="Refresh the reference data."
)
bundled_job = dg.define_asset_job(
    "bundled_job",
    selection=dg.AssetSelection.assets(bundled_bars),
    description="Load one bundled series (a partition per symbol).",
)
synthetic_job = dg.define_asset_job(
    "synthetic_job",
    selection=dg.AssetSelection.assets(synthetic_bars),
    description="Generate and load one day of the synthetic IDX market.",
)
landing_job = dg.define_asset_job(
    "landing_job",
    selection=dg.AssetSelection.assets(landing_bars),
    description="Load the files waiting in the landing folder.",
)

# Every day at 17:00 WIB (after the 16:00 close) for the latest complete day; a weekend or holiday loads nothing.
synthetic_daily_schedule = dg.build_schedule_from_partitioned_job(
    synthetic_job, name="synthetic_daily_schedule", hour_of_day=17, minute_of_hour=0
)

instruments_weekly_schedule = dg.ScheduleDefinition(
    name="instruments_weekly_schedule",
    job=instruments_job,
    cron_schedule="0 6 * * 1",
    execution_timezone=partitions.IDX_TIMEZONE,
    description="Mondays 06:00 WIB: upsert the shipped instruments and holidays.",
)


@dg.schedule(
    job=bundled_job,
    cron_schedule="0 6 * * 0",
    execution_timezone=partitions.IDX_TIMEZONE,
    description="Sundays 06:00 WIB: reload every bundled series (one run per symbol; unchanged rows stay as they are).",
)
def bundled_weekly_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    when = context.scheduled_execution_time
    tick = when.strftime("%Y-%m-%dT%H:%M") if when is not None else "manual"
    return [
        dg.RunRequest(run_key=f"{symbol}@{tick}", partition_key=symbol)
        for symbol in partitions.bundled_symbols.get_partition_keys()
    ]


jobs = [instruments_job, bundled_job, synthetic_job, landing_job]
schedules = [synthetic_daily_schedule, instruments_weekly_schedule, bundled_weekly_schedule]
