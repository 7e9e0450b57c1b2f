"""PostgreSQL: `export` the `retail` table into the lake, and `load_pg` files into it.

Export reads one snapshot over several connections, as `pg_dump -j` does: a coordinating
connection opens a REPEATABLE READ transaction and exports its snapshot (`pg_export_snapshot()`);
each worker connection imports it (`SET TRANSACTION SNAPSHOT`) and streams `COPY (SELECT …) TO
STDOUT` of its own months straight into pyarrow's CSV reader (C), on a thread of its own, so no
value ever becomes a Python object. Frames reach the one lake writer through short queues, so
memory stays bounded whatever the table's size. Identifiers from users pass through
`psycopg.sql.Identifier`; no message shows a DSN's password.
"""

from __future__ import annotations

# The public names, from the modules that define them.
from lgs_fast.ingest.postgres.connection import APPLICATION as APPLICATION
from lgs_fast.ingest.postgres.connection import DEFAULT_TABLE as DEFAULT_TABLE
from lgs_fast.ingest.postgres.connection import default_dsn as default_dsn
from lgs_fast.ingest.postgres.connection import mask_passwords as mask_passwords
from lgs_fast.ingest.postgres.connection import redact as redact
from lgs_fast.ingest.postgres.exporting import ExportResult as ExportResult
from lgs_fast.ingest.postgres.exporting import export as export
from lgs_fast.ingest.postgres.loading import load_pg as load_pg
from lgs_fast.ingest.postgres.shares import default_jobs as default_jobs
