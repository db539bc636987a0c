"""Two foreign keys the order path paid for twice: an order's tenant is checked by its (tenant_id, user_id) key to
tenancy.users, whose tenant_id references tenancy.tenants, and a fill's by its (tenant_id, order_id) key to
trading.orders. Each check locks the referenced row (a WAL record, and a multixact when two of the tenant's
transactions hold it), so the direct keys to tenancy.tenants added cost and no integrity.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

IMPLIED_KEYS = r"""
alter table trading.orders drop constraint orders_tenant_id_fkey;  -- implied by orders_tenant_id_user_id_fkey
alter table trading.fills drop constraint fills_tenant_id_fkey;  -- implied by fills_tenant_id_order_id_fkey
"""


def upgrade() -> None:
    op.execute(IMPLIED_KEYS)


def downgrade() -> None:
    raise NotImplementedError("forward-only: write a new migration instead")
