"""The landing folder sensor: a run of ``landing_bars`` whenever files wait in PASAR_HOME/landing."""

import hashlib
from pathlib import Path

import dagster as dg

from orchestration.defs.market.schedules import landing_job
from orchestration.resources import PasarDatabase
from pasar.market import service


def landing_run_key(files: list[Path]) -> str | None:
    """A key naming exactly these files as they are now (names, sizes, modification times); None if every file
    vanished meanwhile (a run picked them up). The same waiting files give the same key, so one run loads them."""
    parts = []
    for path in files:
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        parts.append(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}")
    if not parts:
        return None
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dg.sensor(
    job=landing_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a landing_bars run when CSV or Parquet files wait in PASAR_HOME/landing.",
)
def landing_sensor(context: dg.SensorEvaluationContext, database: PasarDatabase) -> dg.RunRequest | dg.SkipReason:
    home = Path(database.home)
    files = service.pending_landing_files(home)
    key = landing_run_key(files)
    if key is None:
        return dg.SkipReason(f"no files waiting in {home / 'landing'}")
    names = [path.name for path in files]
    context.log.info("%d file(s) waiting: %s", len(names), ", ".join(names))
    return dg.RunRequest(run_key=key, tags={"pasar/landing_files": ",".join(names)[:1000]})


sensors = [landing_sensor]
