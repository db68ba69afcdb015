"""Persistence: one SQLite file opened through APSW, its schema, and its repositories.

Repositories are plain functions over an `apsw.Connection`; `Store` decides where they run
(reads on the loop, writes group-committed on the writer thread).
"""

from .database import Store
from .db import StoreError

__all__ = ["Store", "StoreError"]
