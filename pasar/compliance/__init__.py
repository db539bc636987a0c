"""Compliance: surveillance alerts and their review lifecycle, and the per-tenant, per-period reports."""
