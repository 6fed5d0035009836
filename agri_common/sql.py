"""SQL the packages share, the same on SQLite and PostgreSQL."""

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignoring_duplicates(conn: Connection, table: Table, rows: list[dict]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING (a re-sent or repeated row is stored once);
    returns the rows inserted."""
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    key = table.primary_key.columns.values()[0]
    # RETURNING, not rowcount: a many-row insert's rowcount is not the rows inserted
    inserted = conn.execute(dialect.insert(table).on_conflict_do_nothing().returning(key), rows)
    return len(inserted.all())
