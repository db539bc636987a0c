"""The usage rollup: usage.events to usage.daily per tenant and kind, one UTC day per partition."""

from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg

from orchestration import partitions
from orchestration.resources import PasarDatabase
from pasar.usage import repository
from pasar.usage.models import UsageKind

GROUP = "usage"
RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL)


def totals_by_kind(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """usage.daily rows of one day summed over tenants: kind -> events, quantity, cost (every kind listed)."""
    totals = {kind.value: {"tenants": 0, "events": 0, "quantity": 0, "cost": 0} for kind in UsageKind}
    for row in rows:
        entry = totals.setdefault(row["kind"], {"tenants": 0, "events": 0, "quantity": 0, "cost": 0})
        entry["tenants"] += 1
        for field in ("events", "quantity", "cost"):
            entry[field] += int(row[field])
    return totals


@dg.asset(
    group_name=GROUP,
    partitions_def=partitions.usage_daily,
    retry_policy=RETRY,
    kinds={"postgres"},
    description="usage.daily for one UTC day, recomputed from usage.events in one transaction (an idempotency "
    "key counts once per tenant and kind).",
)
def usage_daily(context: dg.AssetExecutionContext, database: PasarDatabase) -> Iterator[dg.MaterializeResult[None]]:
    day = date.fromisoformat(context.partition_key)
    with database.connect() as conn:
        with conn.transaction():
            rows = repository.rollup_day(conn, day)
        totals = totals_by_kind(repository.daily_totals(conn, day))
    metadata: dict[str, Any] = {
        "rows": dg.MetadataValue.int(rows),
        "tenants": dg.MetadataValue.int(max((entry["tenants"] for entry in totals.values()), default=0)),
        "totals": dg.MetadataValue.json(totals),
    }
    for kind, entry in totals.items():
        metadata[f"{kind}_events"] = dg.MetadataValue.int(entry["events"])
        metadata[f"{kind}_quantity"] = dg.MetadataValue.int(entry["quantity"])
    yield dg.MaterializeResult(metadata=metadata)
