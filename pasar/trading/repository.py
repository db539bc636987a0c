"""All SQL of trading, run in the request's tenant transaction as pasar_app (row-level security scopes every
row to the tenant; the explicit tenant filters are defence in depth)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import sql

from pasar.db.pool import Conn
from pasar.market.frames import Timeframe
from pasar.trading.ledger import Entry

_TIMEFRAME_ORDER = [timeframe.value for timeframe in Timeframe]

_ORDER_COLUMNS = (
    "id", "tenant_id", "client_order_id", "user_id", "instrument_id", "symbol", "side", "type", "time_in_force",
    "quantity", "limit_price", "stop_price", "status", "filled_quantity", "average_price", "reserved_cash",
    "stop_triggered", "matched_until", "reject_reason", "reject_message", "created_at", "updated_at", "expires_at",
)  # fmt: skip
_ORDER_SELECT = sql.SQL(", ").join(map(sql.Identifier, _ORDER_COLUMNS))


# Account ----------------------------------------------------------------------------------------------------


async def lock_account(conn: Conn, tenant_id: UUID) -> dict[str, Any]:
    """The tenant's account row, created on first use, locked until the transaction ends."""
    await conn.execute(
        "insert into trading.accounts (tenant_id) values (%s) on conflict (tenant_id) do nothing", [tenant_id]
    )
    cur = await conn.execute("select * from trading.accounts where tenant_id = %s for update", [tenant_id])
    row = await cur.fetchone()
    assert row is not None
    return row


async def get_account(conn: Conn, tenant_id: UUID) -> dict[str, Any] | None:
    cur = await conn.execute("select * from trading.accounts where tenant_id = %s", [tenant_id])
    return await cur.fetchone()


async def update_account(conn: Conn, tenant_id: UUID, changes: dict[str, Any]) -> None:
    allowed = {"cash", "kill_switch", "kill_switch_reason", "loss_limited_on", "day", "day_start_equity"}
    if not changes.keys() <= allowed:
        raise ValueError(f"not updatable: {sorted(changes.keys() - allowed)}")
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column)) for column in sorted(changes)
    )
    await conn.execute(
        sql.SQL("update trading.accounts set {}, updated_at = now() where tenant_id = %(tenant_id)s").format(
            assignments
        ),
        {**changes, "tenant_id": tenant_id},
    )


# Market data the engine needs -------------------------------------------------------------------------------


async def latest_bar(conn: Conn, instrument_id: int) -> dict[str, Any] | None:
    """The newest bar of the instrument's finest stored timeframe (the paper venue's latest price)."""
    cur = await conn.execute(
        """
        select s.timeframe, b.ts, b.open, b.high, b.low, b.close, b.volume
        from market.bar_series s
        cross join lateral (
            select ts, open, high, low, close, volume from market.bars
            where instrument_id = s.instrument_id and timeframe = s.timeframe order by ts desc limit 1
        ) b
        where s.instrument_id = %s
        order by array_position(%s::text[], s.timeframe) limit 1
        """,
        [instrument_id, _TIMEFRAME_ORDER],
    )
    return await cur.fetchone()


async def latest_closes(conn: Conn, instrument_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The latest close (and its bar time) of each instrument, from its finest stored timeframe."""
    cur = await conn.execute(
        """
        select i.instrument_id, px.ts, px.close
        from unnest(%s::int[]) as i(instrument_id)
        cross join lateral (
            select b.ts, b.close from market.bar_series s
            cross join lateral (
                select ts, close from market.bars
                where instrument_id = s.instrument_id and timeframe = s.timeframe order by ts desc limit 1
            ) b
            where s.instrument_id = i.instrument_id
            order by array_position(%s::text[], s.timeframe) limit 1
        ) px
        """,
        [list(instrument_ids), _TIMEFRAME_ORDER],
    )
    return {row["instrument_id"]: row for row in await cur.fetchall()}


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


async def insert_order(conn: Conn, order: dict[str, Any]) -> dict[str, Any]:
    columns = [column for column in _ORDER_COLUMNS if column in order]
    cur = await conn.execute(
        sql.SQL("insert into trading.orders ({}) values ({}) returning {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder(column) for column in columns),
            _ORDER_SELECT,
        ),
        order,
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def update_order(conn: Conn, tenant_id: UUID, order_id: UUID, changes: dict[str, Any]) -> dict[str, Any]:
    allowed = {"status", "filled_quantity", "average_price", "reserved_cash", "stop_triggered", "matched_until",
               "quantity", "limit_price", "stop_price", "reject_reason", "reject_message"}  # fmt: skip
    if not changes.keys() <= allowed:
        raise ValueError(f"not updatable: {sorted(changes.keys() - allowed)}")
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column)) for column in sorted(changes)
    )
    cur = await conn.execute(
        sql.SQL(
            "update trading.orders set {}, updated_at = now() where tenant_id = %(tenant_id)s and id = %(order_id)s "
            "returning {}"
        ).format(assignments, _ORDER_SELECT),
        {**changes, "tenant_id": tenant_id, "order_id": order_id},
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def get_order(conn: Conn, tenant_id: UUID, order_id: UUID, *, lock: bool = False) -> dict[str, Any] | None:
    query = sql.SQL("select {} from trading.orders where tenant_id = %s and id = %s{}").format(
        _ORDER_SELECT, sql.SQL(" for update") if lock else sql.SQL("")
    )
    cur = await conn.execute(query, [tenant_id, order_id])
    return await cur.fetchone()


async def list_orders(
    conn: Conn, tenant_id: UUID, *, status: str | None, symbol: str | None, before: datetime | None, limit: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        sql.SQL(
            "select {} from trading.orders where tenant_id = %s and (%s::text is null or status = %s) "
            "and (%s::text is null or symbol = %s) and (%s::timestamptz is null or created_at < %s) "
            "order by created_at desc, id limit %s"
        ).format(_ORDER_SELECT),
        [tenant_id, status, status, symbol, symbol, before, before, limit],
    )
    return await cur.fetchall()


async def open_orders(conn: Conn, tenant_id: UUID, *, instrument_id: int | None = None) -> list[dict[str, Any]]:
    cur = await conn.execute(
        sql.SQL(
            "select {} from trading.orders where tenant_id = %s and status in ('accepted', 'partially_filled') "
            "and (%s::int is null or instrument_id = %s) order by created_at, id for update"
        ).format(_ORDER_SELECT),
        [tenant_id, instrument_id, instrument_id],
    )
    return await cur.fetchall()


async def reserved_cash(conn: Conn, tenant_id: UUID) -> int:
    cur = await conn.execute(
        "select coalesce(sum(reserved_cash), 0) as reserved from trading.orders "
        "where tenant_id = %s and status in ('accepted', 'partially_filled')",
        [tenant_id],
    )
    row = await cur.fetchone()
    return int(row["reserved"]) if row else 0


async def orders_since(conn: Conn, tenant_id: UUID, since: datetime) -> int:
    cur = await conn.execute(
        "select count(*) as n from trading.orders where tenant_id = %s and created_at >= %s", [tenant_id, since]
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


# Fills and positions ----------------------------------------------------------------------------------------


async def insert_fill(conn: Conn, fill: dict[str, Any]) -> bool:
    """False when this execution id was recorded already (fills are idempotent by execution id)."""
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


async def fill_totals(conn: Conn, tenant_id: UUID) -> dict[int, Any]:
    """Σ signed filled quantity per instrument: what positions must equal."""
    cur = await conn.execute(
        "select instrument_id, sum(case side when 'buy' then quantity else -quantity end) as quantity "
        "from trading.fills where tenant_id = %s group by instrument_id",
        [tenant_id],
    )
    return {row["instrument_id"]: row["quantity"] for row in await cur.fetchall()}


# Ledger -----------------------------------------------------------------------------------------------------


async def insert_entry(conn: Conn, tenant_id: UUID, entry: Entry, *, reference: str | None) -> UUID:
    cur = await conn.execute(
        "insert into trading.ledger_entries (tenant_id, kind, reference) values (%s, %s, %s) returning id",
        [tenant_id, entry.kind, reference],
    )
    row = await cur.fetchone()
    assert row is not None
    entry_id: UUID = row["id"]
    async with conn.cursor() as lines:
        await lines.executemany(
            "insert into trading.ledger_lines (tenant_id, entry_id, line_no, account, amount) "
            "values (%s, %s, %s, %s, %s)",
            [(tenant_id, entry_id, number, line.account.value, line.amount) for number, line in enumerate(entry.lines)],
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
    """Daily equity: cash at each day's end plus each holding at that day's last close, from the ledger and the
    fills (so it can be recomputed at any time; nothing is snapshotted)."""
    cur = await conn.execute(
        """
        with bounds as (
            select generate_series(
                (now() at time zone %(tz)s)::date - (%(days)s - 1), (now() at time zone %(tz)s)::date, interval '1 day'
            )::date as day
        ), day_ends as (
            select day, ((day + 1)::timestamp at time zone %(tz)s) as end_at from bounds
        )
        select d.day,
               coalesce((select sum(l.amount) from trading.ledger_lines l
                         join trading.ledger_entries e on e.tenant_id = l.tenant_id and e.id = l.entry_id
                         where l.tenant_id = %(tenant)s and l.account = 'cash' and e.created_at < d.end_at), 0) as cash,
               coalesce((select sum(h.quantity * px.close)
                         from (select instrument_id,
                                      sum(case side when 'buy' then quantity else -quantity end) as quantity
                               from trading.fills where tenant_id = %(tenant)s and created_at < d.end_at
                               group by instrument_id) h
                         cross join lateral (
                             select s.timeframe from market.bar_series s where s.instrument_id = h.instrument_id
                             order by array_position(%(order)s::text[], s.timeframe) limit 1
                         ) finest
                         cross join lateral (
                             select b.close from market.bars b
                             where b.instrument_id = h.instrument_id and b.timeframe = finest.timeframe
                               and b.ts < d.end_at
                             order by b.ts desc limit 1
                         ) px), 0) as market_value
        from day_ends d order by d.day
        """,
        {"tz": timezone, "days": days, "tenant": tenant_id, "order": _TIMEFRAME_ORDER},
    )
    return await cur.fetchall()


# Idempotency ------------------------------------------------------------------------------------------------


async def claim_idempotency_key(conn: Conn, tenant_id: UUID, scope: str, key: str, request_hash: str) -> bool:
    """True when this transaction owns the key. A concurrent holder makes this wait until it commits (then the
    stored answer is read) or rolls back (then this one owns the key): duplicates execute once."""
    cur = await conn.execute(
        "insert into trading.idempotency_keys (tenant_id, scope, key, request_hash) values (%s, %s, %s, %s) "
        "on conflict (tenant_id, scope, key) do nothing",
        [tenant_id, scope, key, request_hash],
    )
    return cur.rowcount == 1


async def get_idempotency_key(conn: Conn, tenant_id: UUID, scope: str, key: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        "select request_hash, response_status, response_body from trading.idempotency_keys "
        "where tenant_id = %s and scope = %s and key = %s",
        [tenant_id, scope, key],
    )
    return await cur.fetchone()


async def store_idempotent_response(conn: Conn, tenant_id: UUID, scope: str, key: str, status: int, body: str) -> None:
    """The answer as the exact text that was sent, so a replay is byte-identical."""
    await conn.execute(
        "update trading.idempotency_keys set response_status = %s, response_body = %s "
        "where tenant_id = %s and scope = %s and key = %s",
        [status, body, tenant_id, scope, key],
    )
