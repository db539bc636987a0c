"""The order-rate window on the account row: a tenant's orders of the last minute in one-second buckets (see
pasar/trading/order_rate.py), written with every order, instead of counting order rows at each order.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ORDER_RATE = r"""
alter table trading.accounts
    add column order_rate_second bigint not null default 0,  -- the newest second (Unix time) counted
    add column order_rate_counts integer[] not null default array_fill(0, array[60])  -- [1 + second % 60]
        check (cardinality(order_rate_counts) = 60 and array_lower(order_rate_counts, 1) = 1);

-- The orders of the minute before the upgrade are counted, so upgrading does not reopen a tenant's window.
update trading.accounts a
set order_rate_second = floor(extract(epoch from now()))::bigint,
    order_rate_counts = (
        select array_agg(coalesce(recent.orders, 0) order by slot)
        from generate_series(0, 59) slot
        left join (
            select floor(extract(epoch from o.created_at))::bigint % 60 as slot, count(*)::integer as orders
            from trading.orders o
            where o.tenant_id = a.tenant_id
              and floor(extract(epoch from o.created_at)) > floor(extract(epoch from now())) - 60
            group by 1
        ) recent using (slot)
    );
"""


def upgrade() -> None:
    op.execute(ORDER_RATE)


def downgrade() -> None:
    raise NotImplementedError("forward-only: write a new migration instead")
