"""load_pg: files into the PostgreSQL table, through COPY."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from lgs_fast.errors import SourceError
from lgs_fast.ingest.postgres.connection import (
    DEFAULT_TABLE,
    default_dsn,
    masked_first_line,
    open_connection,
    redact,
    table_ident,
)
from lgs_fast.lake import (
    Progress,
)
from lgs_fast.schema import COLUMNS, postgres_column

# The LGS table, as `load-pg` creates it.


def load_pg(
    paths: Sequence[str | Path],
    dsn: str | None = None,
    *,
    table: str = DEFAULT_TABLE,
    append: bool = False,
    progress: Progress | None = None,
    date_format: str | None = None,
) -> int:
    """Create `table` (the LGS DDL) if needed and load the files into it, in one transaction.

    Without `append` the table's old rows are replaced. Returns the number of rows loaded.
    Slash dates are read as `import` reads them (`date_format`, or each file's own order).
    """
    import psycopg
    from psycopg import sql

    from lgs_fast.ingest.sources import read_source

    for path in paths:
        # Checks paths, file types and the date format before touching the database.
        read_source(path, date_format=date_format)
    dsn = dsn or default_dsn()
    conn = open_connection(dsn)
    ident = table_ident(table)
    loaded = 0
    try:
        with conn, conn.transaction():
            ddl = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(postgres_column(c)))
                for c in COLUMNS
            )
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(ident, ddl))
            if not append:
                conn.execute(sql.SQL("TRUNCATE {}").format(ident))
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
                ident, sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
            )
            with conn.cursor().copy(copy_sql) as copy:
                for path in paths:
                    for frame in read_source(path, date_format=date_format):
                        buffer = io.BytesIO()
                        frame.write_csv(
                            buffer, include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.6f"
                        )
                        copy.write(buffer.getvalue())
                        loaded += frame.height
                        if progress:
                            progress(loaded)
    except psycopg.Error as err:
        raise SourceError(
            f"load into {table!r} failed ({redact(dsn or '')}): {masked_first_line(err)}"
        ) from None
    finally:
        conn.close()
    return loaded
