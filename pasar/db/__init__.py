"""Database access: connection URLs, the tenant-scoped transaction, migrations."""

from pasar.db.pool import Database, tenant_transaction

__all__ = ["Database", "tenant_transaction"]
