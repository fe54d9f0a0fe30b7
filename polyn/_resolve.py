"""The former name of :mod:`polyn.resolve` (kept so that code written against it still imports)."""

from __future__ import annotations

from polyn.resolve import SCHEMAS, Conn, Resolved, config_of, resolve, schemas_for

__all__ = ["SCHEMAS", "Conn", "Resolved", "config_of", "resolve", "schemas_for"]
