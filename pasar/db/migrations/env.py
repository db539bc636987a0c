"""Alembic environment: migrations are raw SQL run as the owner role, one transaction per migration."""

from __future__ import annotations

import psycopg
from alembic import context
from sqlalchemy import create_engine, pool

owner_conninfo: str = context.config.attributes["owner_conninfo"]
engine = create_engine(
    "postgresql+psycopg://", creator=lambda: psycopg.connect(owner_conninfo), poolclass=pool.NullPool
)
with engine.connect() as connection:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
