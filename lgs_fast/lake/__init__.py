"""The lake: hive-partitioned Parquet of canonical invoice lines, plus `_manifest.json`.

Layout: ``LAKE/invoice_lines/year=YYYY/month=MM/part-<write id>.parquet`` (zstd), and beside
each month its derived layers (`lgs_fast.lake.layers`): ``LAKE/invoices/…`` and ``LAKE/products/…``
under the same partition and file name, and the month's quality counts in the manifest. The
manifest is the lake's one source of truth: it names the file of every month and of its layers,
with their row counts, sizes and checksums. Writes are transactions:

- one writer at a time: an exclusive lock on the lake directory itself (no lock file anyone
  could delete), not waited for (a second writer fails at once with `BusyError`);
- a writer only adds files under new names, then commits by atomically replacing the manifest:
  a crash or kill at any moment leaves the previous manifest, and so the previous lake, whole;
- readers read the manifest and exactly the files it names, under a shared lock on
  ``LAKE/.lgs_fast.readers``; files no manifest names any more are deleted by a later writer only
  when no reader holds that lock, and never the previous version's (a LazyFrame made before a
  write still reads after it), nor those of a version a running process pinned (`pin`: a
  notebook's frames read whenever it collects them);
- lgs_fast writes only into a new or empty directory or a lake whose manifest it can read, and
  deletes nothing but its own part files.
"""

from __future__ import annotations

# The lake's public names, from the modules that define them.
from lgs_fast.lake.location import DEFAULT_LAKE as DEFAULT_LAKE
from lgs_fast.lake.location import LakeChoice as LakeChoice
from lgs_fast.lake.location import default_lake as default_lake
from lgs_fast.lake.location import find_lake as find_lake
from lgs_fast.lake.location import local_lake as local_lake
from lgs_fast.lake.location import project_root as project_root
from lgs_fast.lake.locks import PINS as PINS
from lgs_fast.lake.locks import READER_LOCK as READER_LOCK
from lgs_fast.lake.locks import exclusive_lock as exclusive_lock
from lgs_fast.lake.locks import first_line as first_line
from lgs_fast.lake.locks import fsync as fsync
from lgs_fast.lake.locks import same_file as same_file
from lgs_fast.lake.locks import sha256_file as sha256_file
from lgs_fast.lake.manifest import CHECKSUM as CHECKSUM
from lgs_fast.lake.manifest import MANIFEST as MANIFEST
from lgs_fast.lake.manifest import TABLE as TABLE
from lgs_fast.lake.manifest import Manifest as Manifest
from lgs_fast.lake.manifest import Month as Month
from lgs_fast.lake.manifest import Progress as Progress
from lgs_fast.lake.manifest import manifest_checksum as manifest_checksum
from lgs_fast.lake.manifest import month_of as month_of
from lgs_fast.lake.manifest import partition_key as partition_key
from lgs_fast.lake.read import Snapshot as Snapshot
from lgs_fast.lake.read import check_content as check_content
from lgs_fast.lake.read import check_files as check_files
from lgs_fast.lake.read import layer_plan as layer_plan
from lgs_fast.lake.read import pin as pin
from lgs_fast.lake.read import reading as reading
from lgs_fast.lake.read import scan as scan
from lgs_fast.lake.read import scan_files as scan_files
from lgs_fast.lake.read import scan_invoices as scan_invoices
from lgs_fast.lake.read import scan_layers as scan_layers
from lgs_fast.lake.read import snapshot as snapshot
from lgs_fast.lake.read import verify_lake as verify_lake
from lgs_fast.lake.write import LakeWriter as LakeWriter
from lgs_fast.lake.write import interrupted_state as interrupted_state
from lgs_fast.lake.write import upgrade_lake as upgrade_lake
from lgs_fast.lake.write import write_lake as write_lake
