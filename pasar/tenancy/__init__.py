"""Tenants, users, roles, API keys, operators and authentication."""
