"""Durable homes for the library's job records (`core.store.JobStore`): SQLite, for jobd."""

from __future__ import annotations

from jobservice.store.sqlite import SqliteStore, StoreError

__all__ = ["SqliteStore", "StoreError"]
