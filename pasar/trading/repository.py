"""All SQL of trading, run in the request's tenant transaction as pasar_app (row-level security scopes every
row to the tenant; the explicit tenant filters are defence in depth)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any
from uuid import UUID, uuid4

from psycopg import sql
from psycopg.types.json import Jsonb

from pasar.db.pool import Conn
from pasar.market.frames import Timeframe
from pasar.market.repository import InstrumentRow
from pasar.request_context import current_request_id
from pasar.tenancy.models import Principal, TenantConfig
from pasar.trading.ledger import Entry
from pasar.trading.models import json_text
from pasar.trading.order_rate import OrderRateWindow

_TIMEFRAME_ORDER = [timeframe.value for timeframe in Timeframe]

_ORDER_COLUMNS = (
    "id", "tenant_id", "client_order_id", "user_id", "instrument_id", "symbol", "side", "type", "time_in_force",
    "quantity", "limit_price", "stop_price", "status", "filled_quantity", "average_price", "reserved_cash",
    "stop_triggered", "matched_until", "reject_reason", "reject_message", "created_at", "updated_at", "expires_at",
)  # fmt: skip
_ORDER_SELECT = sql.SQL(", ").join(map(sql.Identifier, _ORDER_COLUMNS))


# Composed queries are rendered once per shape and then reused as text: composing them again on every call costs
# more CPU than some of the statements take to run, on the busiest path of the API (placing an order).


def _assignments(columns: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in columns)


@cache
def _update_account_sql(columns: tuple[str, ...]) -> str:
    return (
        sql.SQL("update trading.accounts set {}, updated_at = now() where tenant_id = %(tenant_id)s")
        .format(_assignments(columns))
        .as_string(None)
    )


@cache
def _update_order_sql(columns: tuple[str, ...]) -> str:
    return (
        sql.SQL(
            "update trading.orders set {}, updated_at = now() where tenant_id = %(tenant_id)s and id = %(order_id)s "
            "returning {}"
        )
        .format(_assignments(columns), _ORDER_SELECT)
        .as_string(None)
    )


_GET_ORDER = sql.SQL("select {} from trading.orders where tenant_id = %s and id = %s").format(_ORDER_SELECT)
_GET_ORDER_SQL = {False: _GET_ORDER.as_string(None), True: (_GET_ORDER + sql.SQL(" for update")).as_string(None)}
_LIST_ORDERS_SQL = (
    sql.SQL(
        "select {} from trading.orders where tenant_id = %s and (%s::text is null or status = %s) "
        "and (%s::text is null or symbol = %s) and (%s::timestamptz is null or created_at < %s) "
        "order by created_at desc, id limit %s"
    )
    .format(_ORDER_SELECT)
    .as_string(None)
)
_OPEN_ORDERS_SQL = (
    sql.SQL(
        "select {} from trading.orders where tenant_id = %s and status in ('accepted', 'partially_filled') "
        "and (%s::int is null or instrument_id = %s) order by created_at, id for update"
    )
    .format(_ORDER_SELECT)
    .as_string(None)
)


# Account ----------------------------------------------------------------------------------------------------


async def lock_account(conn: Conn, tenant_id: UUID) -> dict[str, Any]:
    """The tenant's account row, created on first use, locked until the transaction ends."""
    cur = await conn.execute(_LOCK_ACCOUNT_SQL, [tenant_id])
    row = await cur.fetchone()
    if row is None:  # the first use: one round trip less on every later one
        await conn.execute(
            "insert into trading.accounts (tenant_id) values (%s) on conflict (tenant_id) do nothing", [tenant_id]
        )
        cur = await conn.execute(_LOCK_ACCOUNT_SQL, [tenant_id])
        row = await cur.fetchone()
    assert row is not None
    return row


# The book an order is decided against -------------------------------------------------------------------------

_INSTRUMENT_FIELDS = tuple(field.name for field in fields(InstrumentRow))
_LOCK_ACCOUNT_SQL = "select * from trading.accounts where tenant_id = %s for update"
_CLAIM_KEY_SQL = (
    "insert into trading.idempotency_keys (tenant_id, scope, key, request_hash) values (%s, %s, %s, %s) "
    "on conflict (tenant_id, scope, key) do nothing"
)
# Everything but the bars, in one statement: the instrument, the tenant's config, positions, the finest bar series
# of the holdings and of the instrument, and the risk counters. It must be a statement of its own after the
# account lock: a statement sees what was committed when it began, so this one sees the tenant's previous order.
# Planning it costs PostgreSQL about twice what running it does. Its parameters are keys only (the minute is counted
# on the statement's own clock, not from a parameter whose range the planner would estimate), so its generic plan
# costs what a custom one does and, prepared, it is planned once per connection.
_BOOK_SQL = (
    sql.SQL(
        """
        select now() as now, t.config::text as config, {instrument},
               p.position_ids, p.position_quantities, p.position_avg_costs, p.position_realized,
               s.series_ids, s.series_timeframes, s.series_last_ts, s.series_updated_at,
               (select coalesce(sum(o.reserved_cash), 0) from trading.orders o
                where o.tenant_id = t.id and o.status in ('accepted', 'partially_filled')) as reserved
        from tenancy.tenants t
        left join market.instruments i on i.symbol = %(symbol)s
        cross join lateral (
            select array_agg(instrument_id) as position_ids, array_agg(quantity) as position_quantities,
                   array_agg(avg_cost) as position_avg_costs, array_agg(realized_pnl) as position_realized
            from trading.positions where tenant_id = t.id
        ) p
        cross join lateral (
            select array_agg(instrument_id) as series_ids, array_agg(timeframe) as series_timeframes,
                   array_agg(last_ts) as series_last_ts, array_agg(updated_at) as series_updated_at
            from (
                select distinct on (instrument_id) instrument_id, timeframe, last_ts, updated_at
                from market.bar_series
                where instrument_id = any(array(select instrument_id from trading.positions
                                                where tenant_id = t.id and quantity <> 0) || i.id)
                order by instrument_id, array_position(%(timeframes)s::text[], timeframe)
            ) finest
        ) s
        where t.id = %(tenant_id)s
        """
    )
    .format(
        instrument=sql.SQL(", ").join(
            sql.SQL("i.{} as {}").format(sql.Identifier(name), sql.Identifier("instrument_" + name))
            for name in _INSTRUMENT_FIELDS
        )
    )
    .as_string(None)
)


@dataclass(frozen=True)
class BookRows:
    """What :func:`open_book` read, the account row locked. ``claimed`` is None when no key was to be claimed."""

    account: dict[str, Any]
    claimed: bool | None
    now: datetime  # the transaction's timestamp: what now() and the columns defaulting to it hold
    config: TenantConfig
    instrument: InstrumentRow | None
    positions: dict[int, dict[str, Any]]  # by instrument id
    bars: dict[int, dict[str, Any]]  # the latest bar of each holding and of the instrument
    reserved: int  # cash reserved by open orders


@lru_cache(maxsize=256)
def _tenant_config(document: str) -> TenantConfig:
    """Parsed once per distinct config (it is frozen); the text is still read with every order."""
    return TenantConfig.model_validate(json.loads(document))


async def open_book(
    conn: Conn, tenant_id: UUID, *, symbol: str | None, claim: tuple[str, str, str] | None = None
) -> BookRows:
    """Claim the idempotency key ``claim`` (scope, key, request hash) if given, lock the tenant's account (created on
    first use) and read the book: three statements in one round trip, and the bars in one more unless this process
    has them already."""
    async with conn.pipeline():
        claim_cur = await conn.execute(_CLAIM_KEY_SQL, [tenant_id, *claim]) if claim is not None else None
        account_cur = await conn.execute(_LOCK_ACCOUNT_SQL, [tenant_id])
        book_cur = await conn.execute(
            _BOOK_SQL, {"tenant_id": tenant_id, "symbol": symbol, "timeframes": _TIMEFRAME_ORDER}
        )
    claimed = None if claim_cur is None else claim_cur.rowcount == 1
    account = await account_cur.fetchone()
    if account is None:  # the first order of the tenant: create the account, then read the book again
        await lock_account(conn, tenant_id)
        return replace(await open_book(conn, tenant_id, symbol=symbol), claimed=claimed)
    row = await book_cur.fetchone()
    assert row is not None
    instrument = (
        None
        if row["instrument_id"] is None
        else InstrumentRow(**{name: row["instrument_" + name] for name in _INSTRUMENT_FIELDS})
    )
    positions = {
        instrument_id: {"instrument_id": instrument_id, "quantity": quantity, "avg_cost": avg_cost,
                        "realized_pnl": realized}
        for instrument_id, quantity, avg_cost, realized in zip(
            row["position_ids"] or (), row["position_quantities"] or (), row["position_avg_costs"] or (),
            row["position_realized"] or (), strict=True,
        )
    }  # fmt: skip
    series = [
        {"instrument_id": instrument_id, "timeframe": timeframe, "last_ts": last_ts, "updated_at": updated_at}
        for instrument_id, timeframe, last_ts, updated_at in zip(
            row["series_ids"] or (), row["series_timeframes"] or (), row["series_last_ts"] or (),
            row["series_updated_at"] or (), strict=True,
        )
    ]  # fmt: skip
    return BookRows(
        account=account,
        claimed=claimed,
        now=row["now"],
        config=_tenant_config(row["config"]),
        instrument=instrument,
        positions=positions,
        bars=await _stamped_bars(conn, series),
        reserved=int(row["reserved"]),
    )


# Every write of market.bars stamps its series in market.bar_series (last_ts, updated_at: see the loader's
# _record_series), and the book reads those stamps: a bar remembered under the stamp it was read with is the bar a
# query would return as long as the stamp is unchanged, so the order path reads bars only when a load has moved
# them. Kept per process, the newest stamp of each series only.
_STAMPED_BARS_CAPACITY = 10_000
_bars_by_stamp: dict[tuple[int, str], tuple[datetime, datetime, dict[str, Any]]] = {}


async def _stamped_bars(conn: Conn, series: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The bar at ``last_ts`` of each series (instrument_id, timeframe, last_ts, updated_at), by instrument id: from
    this process's memory where the series' stamp is the one it was read with, from the database otherwise."""
    bars, unknown = {}, []
    for row in series:
        known = _bars_by_stamp.get((row["instrument_id"], row["timeframe"]))
        if known is not None and known[:2] == (row["last_ts"], row["updated_at"]):
            bars[row["instrument_id"]] = known[2]
        else:
            unknown.append(row)
    if unknown:
        read = await _bars_of(conn, unknown)
        if len(_bars_by_stamp) > _STAMPED_BARS_CAPACITY:
            _bars_by_stamp.clear()
        for row in unknown:
            bar = read.get(row["instrument_id"])
            if bar is not None and bar["ts"] == row["last_ts"]:  # not a bar found below a removed one
                _bars_by_stamp[row["instrument_id"], row["timeframe"]] = (row["last_ts"], row["updated_at"], bar)
        bars.update(read)
    return bars


async def get_account(conn: Conn, tenant_id: UUID) -> dict[str, Any] | None:
    cur = await conn.execute("select * from trading.accounts where tenant_id = %s", [tenant_id])
    return await cur.fetchone()


async def update_account(conn: Conn, tenant_id: UUID, changes: dict[str, Any]) -> None:
    allowed = {"cash", "kill_switch", "kill_switch_reason", "loss_limited_on", "day", "day_start_equity"}
    if not changes.keys() <= allowed:
        raise ValueError(f"not updatable: {sorted(changes.keys() - allowed)}")
    await conn.execute(_update_account_sql(tuple(sorted(changes))), {**changes, "tenant_id": tenant_id})


# Market data the engine needs -------------------------------------------------------------------------------


async def _finest_series(conn: Conn, instrument_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Each instrument's finest stored timeframe and its newest bar time (market.bar_series, kept by every load)."""
    cur = await conn.execute(
        "select distinct on (instrument_id) instrument_id, timeframe, last_ts from market.bar_series "
        "where instrument_id = any(%s) order by instrument_id, array_position(%s::text[], timeframe)",
        [list(instrument_ids), _TIMEFRAME_ORDER],
    )
    return await cur.fetchall()


# market.bars has a partition per month: a query that joins its way to the newest bar makes the planner consider
# every partition (tens of milliseconds with a few hundred), and "order by ts desc limit 1" probes each of them.
# Asking bar_series first and then for bars at known times lets the planner prune to the partitions holding them.


_BAR_COLUMNS = ("ts", "open", "high", "low", "close", "volume")


async def latest_bars(conn: Conn, instrument_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The newest bar (timeframe, ts, open, high, low, close, volume) of each instrument's finest stored timeframe:
    the paper venue's latest prices. Two round trips whatever the number of instruments."""
    return await _bars_of(conn, await _finest_series(conn, instrument_ids))


async def _bars_of(conn: Conn, series: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The bar at ``last_ts`` of each series (instrument_id, timeframe, last_ts), by instrument id."""
    if not series:
        return {}
    cur = await conn.execute(
        "select instrument_id, timeframe, ts, open, high, low, close, volume from market.bars "
        "where instrument_id = any(%s) and timeframe = any(%s) and ts = any(%s)",
        [[row["instrument_id"] for row in series], list({row["timeframe"] for row in series}),
         list({row["last_ts"] for row in series})],
    )  # fmt: skip
    wanted = {(row["instrument_id"], row["timeframe"], row["last_ts"]) for row in series}
    bars = {
        row["instrument_id"]: {"timeframe": row["timeframe"], **{column: row[column] for column in _BAR_COLUMNS}}
        for row in await cur.fetchall()
        if (row["instrument_id"], row["timeframe"], row["ts"]) in wanted
    }
    for row in series:
        if row["instrument_id"] in bars:
            continue
        # The newest bar was removed since: search below it (slower, and never the usual case).
        cur = await conn.execute(
            "select ts, open, high, low, close, volume from market.bars "
            "where instrument_id = %s and timeframe = %s and ts < %s order by ts desc limit 1",
            [row["instrument_id"], row["timeframe"], row["last_ts"]],
        )
        bar = await cur.fetchone()
        if bar is not None:
            bars[row["instrument_id"]] = {"timeframe": row["timeframe"], **bar}
    return bars


async def latest_bar(conn: Conn, instrument_id: int) -> dict[str, Any] | None:
    """The newest bar of the instrument's finest stored timeframe (the paper venue's latest price)."""
    return (await latest_bars(conn, [instrument_id])).get(instrument_id)


async def latest_closes(conn: Conn, instrument_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The latest close (and its bar time) of each instrument, from its finest stored timeframe."""
    return {
        instrument_id: {"instrument_id": instrument_id, "ts": bar["ts"], "close": bar["close"]}
        for instrument_id, bar in (await latest_bars(conn, instrument_ids)).items()
    }


async def bars_after(
    conn: Conn, instrument_id: int, timeframe: str, after: datetime, limit: int
) -> list[dict[str, Any]]:
    """Bars newer than ``after``, oldest first: what a resting order is matched against."""
    cur = await conn.execute(
        "select ts, open, high, low, close, volume from market.bars "
        "where instrument_id = %s and timeframe = %s and ts > %s order by ts limit %s",
        [instrument_id, timeframe, after, limit],
    )
    return await cur.fetchall()


# Orders -----------------------------------------------------------------------------------------------------


_UPDATABLE_ORDER_COLUMNS = frozenset(
    {"status", "filled_quantity", "average_price", "reserved_cash", "stop_triggered", "matched_until", "quantity",
     "limit_price", "stop_price", "reject_reason", "reject_message"}
)  # fmt: skip


def _checked_changes(changes: dict[str, Any]) -> tuple[str, ...]:
    if not changes.keys() <= _UPDATABLE_ORDER_COLUMNS:
        raise ValueError(f"not updatable: {sorted(changes.keys() - _UPDATABLE_ORDER_COLUMNS)}")
    return tuple(sorted(changes))


async def update_order(conn: Conn, tenant_id: UUID, order_id: UUID, changes: dict[str, Any]) -> dict[str, Any]:
    cur = await conn.execute(
        _update_order_sql(_checked_changes(changes)), {**changes, "tenant_id": tenant_id, "order_id": order_id}
    )
    row = await cur.fetchone()
    assert row is not None
    return row


@cache
def _update_order_with_event_sql(columns: tuple[str, ...]) -> str:
    return (
        sql.SQL(
            "with updated as ({}), event as ("
            "insert into audit.events (tenant_id, actor_type, actor_id, action, target_type, target_id, details, "
            "request_id) select %(tenant_id)s, %(actor_type)s, %(actor_id)s, %(action)s, %(target_type)s, "
            "%(target_id)s, %(details)s, %(request_id)s from updated"
            ") select * from updated"
        )
        .format(sql.SQL(_update_order_sql(columns)))
        .as_string(None)
    )


async def update_order_with_event(
    conn: Conn, principal: Principal, order_id: UUID, changes: dict[str, Any], event: AuditEvent
) -> dict[str, Any]:
    """Update an order and record its audit event in one statement."""
    cur = await conn.execute(
        _update_order_with_event_sql(_checked_changes(changes)),
        {
            **changes,
            "tenant_id": principal.tenant_id,
            "order_id": order_id,
            "actor_type": principal.actor_type,
            "actor_id": principal.actor_id,
            "action": event.action,
            "target_type": event.target_type,
            "target_id": str(event.target_id),
            "details": Jsonb(event.details),
            "request_id": current_request_id(),
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def lock_account_and_order(conn: Conn, tenant_id: UUID, order_id: UUID) -> dict[str, Any] | None:
    """Lock the tenant's account, then the order (the order of locks every writer takes), in one round trip."""
    async with conn.pipeline():
        account = await conn.execute(_LOCK_ACCOUNT_SQL, [tenant_id])
        order = await conn.execute(_GET_ORDER_SQL[True], [tenant_id, order_id])
    if await account.fetchone() is None:  # no account yet, so no order either: create it as lock_account does
        await lock_account(conn, tenant_id)
    return await order.fetchone()


async def get_order(conn: Conn, tenant_id: UUID, order_id: UUID, *, lock: bool = False) -> dict[str, Any] | None:
    cur = await conn.execute(_GET_ORDER_SQL[lock], [tenant_id, order_id])
    return await cur.fetchone()


async def list_orders(
    conn: Conn, tenant_id: UUID, *, status: str | None, symbol: str | None, before: datetime | None, limit: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(_LIST_ORDERS_SQL, [tenant_id, status, status, symbol, symbol, before, before, limit])
    return await cur.fetchall()


async def open_orders(conn: Conn, tenant_id: UUID, *, instrument_id: int | None = None) -> list[dict[str, Any]]:
    cur = await conn.execute(_OPEN_ORDERS_SQL, [tenant_id, instrument_id, instrument_id])
    return await cur.fetchall()


async def reserved_cash(conn: Conn, tenant_id: UUID) -> int:
    cur = await conn.execute(
        "select coalesce(sum(reserved_cash), 0) as reserved from trading.orders "
        "where tenant_id = %s and status in ('accepted', 'partially_filled')",
        [tenant_id],
    )
    row = await cur.fetchone()
    return int(row["reserved"]) if row else 0


# The new order's writes in one statement -----------------------------------------------------------------------

# Every row is passed as JSON and typed by its table's row type, so the statement's text is one whatever the order
# did (filled or not, audited once or three times): the data-modifying parts run together, their foreign keys
# checked at the statement's end and the ledger's balance at commit. Nothing here decides anything.
_RECORD_ORDER_SQL = """
with account as (
    update trading.accounts set cash = coalesce(%(cash)s::bigint, cash),
                                loss_limited_on = coalesce(%(loss_limited_on)s::date, loss_limited_on),
                                order_rate_second = %(order_rate_second)s,
                                order_rate_counts = %(order_rate_counts)s::integer[],
                                updated_at = now()
    where tenant_id = %(tenant)s
), new_order as (
    insert into trading.orders ({order_columns})
    select {order_columns} from jsonb_populate_recordset(null::trading.orders, %(orders)s::jsonb)
), fill as (
    insert into trading.fills ({fill_columns})
    select {fill_columns} from jsonb_populate_recordset(null::trading.fills, %(fills)s::jsonb)
), position as (
    insert into trading.positions (tenant_id, instrument_id, quantity, avg_cost, realized_pnl)
    select tenant_id, instrument_id, quantity, avg_cost, realized_pnl
    from jsonb_populate_recordset(null::trading.positions, %(positions)s::jsonb)
    on conflict (tenant_id, instrument_id) do update
        set quantity = excluded.quantity, avg_cost = excluded.avg_cost, realized_pnl = excluded.realized_pnl,
            updated_at = now()
), entry as (
    insert into trading.ledger_entries (tenant_id, id, kind, reference)
    select tenant_id, id, kind, reference
    from jsonb_populate_recordset(null::trading.ledger_entries, %(entries)s::jsonb)
), line as (
    insert into trading.ledger_lines (tenant_id, entry_id, line_no, account, amount)
    select tenant_id, entry_id, line_no, account, amount
    from jsonb_populate_recordset(null::trading.ledger_lines, %(lines)s::jsonb)
), event as (
    insert into audit.events (tenant_id, actor_type, actor_id, action, target_type, target_id, details, request_id)
    select tenant_id, actor_type, actor_id, action, target_type, target_id, details, request_id
    from jsonb_populate_recordset(null::audit.events, %(events)s::jsonb)
)
update trading.idempotency_keys set response_status = %(answer_status)s, response_body = %(answer_body)s
where tenant_id = %(tenant)s and scope = %(scope)s and key = %(key)s
"""


@dataclass(frozen=True)
class FillRows:
    """What one fill writes besides its order: the fill row, the position after it, its ledger entry, the cash."""

    fill: dict[str, Any]
    position: dict[str, Any]  # quantity, avg_cost, realized_pnl
    entry: Entry
    cash: int


@dataclass(frozen=True)
class AuditEvent:
    action: str
    target_type: str
    target_id: UUID
    details: dict[str, Any]


@cache
def _record_order_sql(order_columns: tuple[str, ...]) -> str:
    fill_columns = ("tenant_id", "order_id", "execution_id", "instrument_id", "side", "quantity", "price", "value",
                    "commission", "tax", "realized_pnl", "executed_at")  # fmt: skip
    return _RECORD_ORDER_SQL.format(
        order_columns=sql.SQL(", ").join(map(sql.Identifier, order_columns)).as_string(None),
        fill_columns=sql.SQL(", ").join(map(sql.Identifier, fill_columns)).as_string(None),
    )


async def record_order(
    conn: Conn,
    principal: Principal,
    order: dict[str, Any],
    *,
    fill: FillRows | None,
    events: Sequence[AuditEvent],
    loss_limited_on: date | None,
    order_rate: OrderRateWindow,
    answer: tuple[str, str, int, str] | None,
) -> None:
    """Write a new order in its final state with its fill (position, ledger entry, cash), the account's loss-limit
    day and order-rate window (this order counted), its audit events and the idempotent answer (scope, key, status,
    body): one statement, one round trip. A duplicate client_order_id raises UniqueViolation."""
    tenant_id = order["tenant_id"]
    entries: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    positions: list[dict[str, Any]] = []
    if fill is not None:
        entry_id = uuid4()
        entries.append({"tenant_id": tenant_id, "id": entry_id, "kind": fill.entry.kind,
                        "reference": fill.fill["execution_id"]})  # fmt: skip
        lines.extend(
            {"tenant_id": tenant_id, "entry_id": entry_id, "line_no": line_no, "account": line.account.value,
             "amount": line.amount}
            for line_no, line in enumerate(fill.entry.lines)
        )  # fmt: skip
        positions.append({**fill.position, "tenant_id": tenant_id, "instrument_id": order["instrument_id"]})
    request_id = current_request_id()
    audit_rows = [
        {"tenant_id": tenant_id, "actor_type": principal.actor_type, "actor_id": principal.actor_id,
         "action": event.action, "target_type": event.target_type, "target_id": str(event.target_id),
         "details": event.details, "request_id": request_id}
        for event in events
    ]  # fmt: skip
    scope, key, status, body = answer if answer is not None else (None, None, None, None)
    await conn.execute(
        _record_order_sql(tuple(order)),
        {
            "tenant": tenant_id,
            "cash": None if fill is None else fill.cash,
            "loss_limited_on": loss_limited_on,
            "order_rate_second": order_rate.second,
            "order_rate_counts": "{" + ",".join(map(str, order_rate.counts)) + "}",  # text: cheaper than a list
            "orders": json_text([order]),
            "fills": json_text([] if fill is None else [fill.fill]),
            "positions": json_text(positions),
            "entries": json_text(entries),
            "lines": json_text(lines),
            "events": json_text(audit_rows),
            "answer_status": status,
            "answer_body": body,
            "scope": scope,
            "key": key,
        },
    )


# Fills and positions ----------------------------------------------------------------------------------------


async def insert_fill(conn: Conn, fill: dict[str, Any]) -> bool:
    """False when this execution id was recorded already (fills are idempotent by execution id). In a pipeline
    the answer is not known yet (False): only a new order's fill, which cannot exist yet, is written there."""
    cur = await conn.execute(
        """
        insert into trading.fills (tenant_id, order_id, execution_id, instrument_id, side, quantity, price, value,
                                   commission, tax, realized_pnl, executed_at)
        values (%(tenant_id)s, %(order_id)s, %(execution_id)s, %(instrument_id)s, %(side)s, %(quantity)s,
                %(price)s, %(value)s, %(commission)s, %(tax)s, %(realized_pnl)s, %(executed_at)s)
        on conflict (tenant_id, execution_id) do nothing
        """,
        fill,
    )
    return cur.rowcount == 1


async def list_fills(
    conn: Conn, tenant_id: UUID, *, order_id: UUID | None, before: datetime | None, limit: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """
        select f.id, f.order_id, f.execution_id, i.symbol, f.side, f.quantity, f.price, f.value, f.commission, f.tax,
               f.realized_pnl, f.executed_at
        from trading.fills f join market.instruments i on i.id = f.instrument_id
        where f.tenant_id = %s and (%s::uuid is null or f.order_id = %s)
          and (%s::timestamptz is null or f.executed_at < %s)
        order by f.executed_at desc, f.id limit %s
        """,
        [tenant_id, order_id, order_id, before, before, limit],
    )
    return await cur.fetchall()


async def get_position(conn: Conn, tenant_id: UUID, instrument_id: int) -> dict[str, Any] | None:
    cur = await conn.execute(
        "select quantity, avg_cost, realized_pnl from trading.positions where tenant_id = %s and instrument_id = %s",
        [tenant_id, instrument_id],
    )
    return await cur.fetchone()


async def upsert_position(conn: Conn, tenant_id: UUID, instrument_id: int, position: dict[str, Any]) -> None:
    await conn.execute(
        """
        insert into trading.positions (tenant_id, instrument_id, quantity, avg_cost, realized_pnl)
        values (%(tenant_id)s, %(instrument_id)s, %(quantity)s, %(avg_cost)s, %(realized_pnl)s)
        on conflict (tenant_id, instrument_id) do update
            set quantity = excluded.quantity, avg_cost = excluded.avg_cost, realized_pnl = excluded.realized_pnl,
                updated_at = now()
        """,
        {**position, "tenant_id": tenant_id, "instrument_id": instrument_id},
    )


async def list_positions(conn: Conn, tenant_id: UUID) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """
        select p.instrument_id, i.symbol, i.lot_size, p.quantity, p.avg_cost, p.realized_pnl, p.updated_at
        from trading.positions p join market.instruments i on i.id = p.instrument_id
        where p.tenant_id = %s order by i.symbol
        """,
        [tenant_id],
    )
    return await cur.fetchall()


# Ledger -----------------------------------------------------------------------------------------------------


async def insert_entry(conn: Conn, tenant_id: UUID, entry: Entry, *, reference: str | None) -> UUID:
    """The entry and its lines in one statement (the balance check runs at commit). Its id is made here, so nothing
    is fetched and the statement queues in a pipeline."""
    entry_id = uuid4()
    await conn.execute(
        """
        with entry as (
            insert into trading.ledger_entries (tenant_id, id, kind, reference)
            values (%(tenant)s, %(id)s, %(kind)s, %(ref)s)
            returning id
        )
        insert into trading.ledger_lines (tenant_id, entry_id, line_no, account, amount)
        select %(tenant)s, entry.id, line.line_no - 1, line.account, line.amount
        from entry,
             unnest(%(accounts)s::text[], %(amounts)s::bigint[]) with ordinality as line(account, amount, line_no)
        """,
        {
            "tenant": tenant_id,
            "id": entry_id,
            "kind": entry.kind,
            "ref": reference,
            "accounts": [line.account.value for line in entry.lines],
            "amounts": [line.amount for line in entry.lines],
        },
    )
    return entry_id


async def ledger_balances(conn: Conn, tenant_id: UUID) -> dict[str, int]:
    cur = await conn.execute(
        "select account, sum(amount) as balance from trading.ledger_lines where tenant_id = %s group by account",
        [tenant_id],
    )
    return {row["account"]: int(row["balance"]) for row in await cur.fetchall()}


async def list_ledger(conn: Conn, tenant_id: UUID, *, before: datetime | None, limit: int) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """
        select e.id, e.kind, e.reference, e.created_at,
               jsonb_agg(jsonb_build_object('account', l.account, 'amount', l.amount) order by l.line_no) as lines
        from trading.ledger_entries e
        join trading.ledger_lines l on l.tenant_id = e.tenant_id and l.entry_id = e.id
        where e.tenant_id = %s and (%s::timestamptz is null or e.created_at < %s)
        group by e.id, e.kind, e.reference, e.created_at
        order by e.created_at desc, e.id limit %s
        """,
        [tenant_id, before, before, limit],
    )
    return await cur.fetchall()


async def equity_history(conn: Conn, tenant_id: UUID, *, timezone: str, days: int) -> list[dict[str, Any]]:
    """Daily equity over the last ``days`` local days: cash at each day's end plus each holding at that day's last
    close, from the ledger and the fills (so it can be recomputed at any time; nothing is snapshotted).

    Rows: ``day`` (date), ``cash`` (int), ``market_value`` (Decimal). A holding with no bar before a day's end adds
    nothing that day. The closes are read once for the whole window (the bars of the window's few partitions, and
    one close before it per instrument), not once per day and holding: market.bars has a partition per month."""
    cur = await conn.execute(
        """
        select day::date as day, (day::date::timestamp at time zone %(tz)s) as start_at,
               ((day::date + 1)::timestamp at time zone %(tz)s) as end_at
        from generate_series((now() at time zone %(tz)s)::date - (%(days)s - 1), (now() at time zone %(tz)s)::date,
                             interval '1 day') as day
        order by day
        """,
        {"tz": timezone, "days": days},
    )
    calendar = await cur.fetchall()
    first_day, window_start, window_end = calendar[0]["day"], calendar[0]["start_at"], calendar[-1]["end_at"]
    cur = await conn.execute(
        "select (e.created_at at time zone %(tz)s)::date as day, sum(l.amount) as amount "
        "from trading.ledger_lines l join trading.ledger_entries e on e.tenant_id = l.tenant_id and e.id = l.entry_id "
        "where l.tenant_id = %(tenant)s and l.account = 'cash' and e.created_at < %(end)s group by 1",
        {"tz": timezone, "tenant": tenant_id, "end": window_end},
    )
    cash_moves = {row["day"]: int(row["amount"]) for row in await cur.fetchall()}
    cur = await conn.execute(
        "select (created_at at time zone %(tz)s)::date as day, instrument_id, "
        "sum(case side when 'buy' then quantity else -quantity end) as quantity "
        "from trading.fills where tenant_id = %(tenant)s and created_at < %(end)s group by 1, 2",
        {"tz": timezone, "tenant": tenant_id, "end": window_end},
    )
    fill_moves = await cur.fetchall()
    instruments = sorted({row["instrument_id"] for row in fill_moves})
    series = await _finest_series(conn, instruments) if instruments else []
    finest = {row["instrument_id"]: row["timeframe"] for row in series}
    closes: dict[int, Decimal] = {}  # the last close before the window, per instrument
    for instrument_id, timeframe in finest.items():
        for lookback in (timedelta(days=31), timedelta(days=366)):  # most have a bar in the month before
            cur = await conn.execute(
                "select close from market.bars where instrument_id = %s and timeframe = %s and ts >= %s and ts < %s "
                "order by ts desc limit 1",
                [instrument_id, timeframe, window_start - lookback, window_start],
            )
            row = await cur.fetchone()
            if row is not None:
                break
        else:  # nothing for a year: any older bar (this probes every older partition)
            cur = await conn.execute(
                "select close from market.bars where instrument_id = %s and timeframe = %s and ts < %s "
                "order by ts desc limit 1",
                [instrument_id, timeframe, window_start],
            )
            row = await cur.fetchone()
        if row is not None:
            closes[instrument_id] = row["close"]
    daily_closes: dict[Any, list[tuple[int, Decimal]]] = {}
    if finest:
        cur = await conn.execute(
            """
            select distinct on (instrument_id, timeframe, (ts at time zone %(tz)s)::date)
                   instrument_id, timeframe, (ts at time zone %(tz)s)::date as day, close
            from market.bars
            where instrument_id = any(%(ids)s) and timeframe = any(%(timeframes)s) and ts >= %(start)s and ts < %(end)s
            order by instrument_id, timeframe, (ts at time zone %(tz)s)::date, ts desc
            """,
            {"tz": timezone, "ids": list(finest), "timeframes": list(set(finest.values())),
             "start": window_start, "end": window_end},
        )  # fmt: skip
        for row in await cur.fetchall():
            if finest.get(row["instrument_id"]) == row["timeframe"]:
                daily_closes.setdefault(row["day"], []).append((row["instrument_id"], row["close"]))
    cash = sum(amount for day, amount in cash_moves.items() if day < first_day)
    held: dict[int, Decimal] = {}
    for row in fill_moves:
        if row["day"] < first_day:
            held[row["instrument_id"]] = held.get(row["instrument_id"], Decimal(0)) + row["quantity"]
    by_day: dict[Any, list[dict[str, Any]]] = {}
    for row in fill_moves:
        if row["day"] >= first_day:
            by_day.setdefault(row["day"], []).append(row)
    history = []
    for entry in calendar:
        day = entry["day"]
        cash += cash_moves.get(day, 0)
        for row in by_day.get(day, ()):
            held[row["instrument_id"]] = held.get(row["instrument_id"], Decimal(0)) + row["quantity"]
        closes.update(daily_closes.get(day, ()))
        value = sum(
            (quantity * closes[instrument_id] for instrument_id, quantity in held.items() if instrument_id in closes),
            Decimal(0),
        )
        history.append({"day": day, "cash": cash, "market_value": value})
    return history


# Idempotency ------------------------------------------------------------------------------------------------


async def claim_idempotency_key(conn: Conn, tenant_id: UUID, scope: str, key: str, request_hash: str) -> bool:
    """True when this transaction owns the key. A concurrent holder makes this wait until it commits (then the
    stored answer is read) or rolls back (then this one owns the key): duplicates execute once."""
    cur = await conn.execute(_CLAIM_KEY_SQL, [tenant_id, scope, key, request_hash])
    return cur.rowcount == 1


async def get_idempotency_key(conn: Conn, tenant_id: UUID, scope: str, key: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        "select request_hash, response_status, response_body from trading.idempotency_keys "
        "where tenant_id = %s and scope = %s and key = %s",
        [tenant_id, scope, key],
    )
    return await cur.fetchone()
