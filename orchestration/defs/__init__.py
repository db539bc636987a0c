"""Dagster definitions by domain: each package exposes ``assets``, ``jobs``, ``schedules`` and ``sensors``."""

from __future__ import annotations

from orchestration.defs import market, usage

domains = [market, usage]

__all__ = ["domains", "market", "usage"]
