"""Connections to PostgreSQL and the table: the DSN (never shown with its password), sessions and the exported snapshot, psql's environment, the table's columns and the SELECT list that reads them in canonical types."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lgs_fast.errors import SourceError
from lgs_fast.lake.locks import first_line
from lgs_fast.schema import COLUMNS

DEFAULT_TABLE = "retail"


APPLICATION = "lgs_fast"


def default_dsn() -> str | None:
    """`LGS_PG_DSN`, if set."""
    return os.environ.get("LGS_PG_DSN") or None


_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


# What follows `password` anywhere in a DSN or a message quoting one: libpq takes a dbname such
# as 'test password=S3cret' literally and quotes it back, and a URI may spell it `password%3D…`.
_PASSWORD_VALUE = re.compile(
    r"(password\s*(?:=|%3D)\s*)('(?:[^'\\]|\\.)*'?|[^\s&\"',;]+)", re.IGNORECASE
)


def mask_passwords(text: str) -> str:
    """`text` with every value that follows `password` (key=value and URI forms) as ***."""
    return _PASSWORD_VALUE.sub(r"\1***", text)


def redact(dsn: str) -> str:
    """The DSN as it may be shown: host, port, database and user, never the password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return "(unparseable DSN)"
    password = parts.get("password")
    shown = {
        k: _mask(str(v), password)
        for k, v in parts.items()
        if k in ("host", "port", "dbname", "user") and v
    }
    return " ".join(f"{k}={v}" for k, v in shown.items()) or "(default connection)"


def _mask(value: str, password: object) -> str:
    """A value with any URI's user information and the password itself replaced by ***."""
    if isinstance(password, str) and password and password in value:
        value = value.replace(password, "***")
    return mask_passwords(_USERINFO.sub("***@", value))


def open_connection(dsn: str | None) -> Any:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    if not dsn:
        raise SourceError("no PostgreSQL DSN: pass --dsn or set LGS_PG_DSN")
    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        # libpq's message quotes the whole string, password included: say only what is wrong.
        raise SourceError(
            "cannot parse the PostgreSQL DSN (not shown: it may hold a password); "
            "expected 'host=… dbname=… user=…' or 'postgresql://user@host:port/dbname'"
        ) from None
    try:
        return psycopg.connect(dsn, application_name=APPLICATION, connect_timeout=10)
    except psycopg.Error as err:
        message = scrub_message(masked_first_line(err), dsn, parts.get("password"))
        raise SourceError(f"cannot connect to PostgreSQL ({redact(dsn)}): {message}") from None


def scrub_message(message: str, dsn: str, password: object) -> str:
    """The message without the DSN or its password, in whatever form libpq may echo them."""
    from urllib.parse import quote

    secrets = [dsn]
    if isinstance(password, str) and password:
        secrets += [password, quote(password, safe=""), quote(password)]
    for secret in sorted(set(secrets), key=len, reverse=True):
        message = message.replace(secret, "***")
    return mask_passwords(_USERINFO.sub("***@", message))


def masked_first_line(err: BaseException) -> str:
    # libpq messages may quote the connection string; keep only the first line, no secrets.
    return mask_passwords(first_line(err))


def table_columns(conn: Any, table: str) -> dict[str, str]:
    """The table's columns and their PostgreSQL types (`table` may be `schema.table`)."""
    schema, _, name = table.rpartition(".")
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = %s AND table_schema = coalesce(%s, current_schema()) "
        "ORDER BY ordinal_position",
        (name, schema or None),
    ).fetchall()
    if not rows:
        raise SourceError(f"no table {table!r} in the database")
    return {str(c): str(t) for c, t in rows}


def table_ident(table: str) -> Any:
    from psycopg import sql

    return sql.Identifier(*table.split("."))


# PostgreSQL types whose text output always parses straight into the canonical Arrow type:
# for these pyarrow's CSV reader converts in C; every other column arrives as text for `conform`.
_NATIVE = {
    "quantity": ("smallint", "integer"),
    "invoice_date": ("timestamp without time zone", "timestamp with time zone", "date"),
    "unit_price": ("double precision",),
    "customer_id": ("smallint", "integer", "bigint"),
}


_NUMBER_TYPES = (
    "smallint", "integer", "bigint", "numeric", "real", "double precision", "text",
    "character varying",
)  # fmt: skip


@dataclass(frozen=True)
class Select:
    items: Any  # psycopg.sql.Composable: the SELECT list, aliased to the canonical names
    native: frozenset[str]  # canonical columns whose values the CSV reader may type itself
    line_hash: Any  # a line's 64-bit hash, over the SELECT list's columns `s.…`


def select_list(available: Mapping[str, str], mapping: Mapping[str, str], table: str) -> Select:
    """The SELECT list in canonical names, converting only what COPY would not print right.

    Columns go out in their own text form (a `::text` cast would cost the server a fifth more
    time and print the same); zoned timestamps are moved to UK time and dates to timestamps.
    """
    from psycopg import sql

    items, native, hashes = [], set(), []
    for canonical in COLUMNS:
        source = mapping.get(canonical, canonical)
        if source not in available:
            raise SourceError(f"table {table!r} has no column {source!r} (for {canonical})")
        kind = available[source]
        column: Any = sql.Identifier(source)
        if canonical == "invoice_date":
            if kind == "timestamp with time zone":
                column = sql.SQL("({} AT TIME ZONE 'Europe/London')").format(column)
            elif kind == "date":
                column = sql.SQL("{}::timestamp").format(column)
            elif not kind.startswith("timestamp"):
                raise SourceError(f"column {source!r} of {table!r} is {kind}, not a timestamp")
        elif canonical in ("quantity", "unit_price", "customer_id") and kind not in _NUMBER_TYPES:
            raise SourceError(f"column {source!r} of {table!r} is {kind}, not a number")
        if kind in _NATIVE.get(canonical, ()):
            native.add(canonical)
        items.append(sql.SQL("{} AS {}").format(column, sql.Identifier(canonical)))
        hashes.append(_hashed(canonical, kind, seed=len(hashes) + 1))
    return Select(sql.SQL(", ").join(items), frozenset(native), sql.SQL(" # ").join(hashes))


# The extended (64-bit, seeded) hash function of each type a canonical column may have.
_HASH = {
    "smallint": "hashint2extended", "integer": "hashint4extended", "bigint": "hashint8extended",
    "numeric": "hash_numeric_extended", "real": "hashfloat4extended",
    "double precision": "hashfloat8extended", "text": "hashtextextended",
    "character varying": "hashtextextended",
}  # fmt: skip


def _hashed(canonical: str, kind: str, seed: int) -> Any:
    """A 64-bit hash of one column's value, seeded by its place in the line, the same for two
    values only when the lake's values are the same.

    Text is hashed as bytes (collation "C": under a case-insensitive collation 'A' equals 'a'),
    a float with its sign when it is zero (-0 equals 0), a type this does not know by its
    printed text, and NULL as the seed itself.
    """
    from psycopg import sql

    column = sql.SQL("s.{}").format(sql.Identifier(canonical))
    if canonical == "invoice_date":  # a timestamp, after the SELECT list's conversion
        value = sql.SQL("timestamp_hash_extended({}, {})")
    elif kind in ("text", "character varying"):
        value = sql.SQL('hashtextextended({} COLLATE "C", {})')
    elif kind in _HASH:
        value = sql.SQL(_HASH[kind] + "({}, {})")
    else:
        value = sql.SQL(
            'hashtextextended(CASE WHEN {0} IS NOT NULL THEN concat({0}) END COLLATE "C", {1})'
        )
    hashed = sql.SQL("coalesce({}, {})").format(
        value.format(column, sql.Literal(seed)), sql.Literal(seed)
    )
    if kind in ("real", "double precision"):
        hashed = sql.SQL(
            "({} # CASE WHEN {c} = 0 THEN hashtextextended({c}::text, {s}) ELSE 0 END)"
        ).format(hashed, c=column, s=sql.Literal(seed))
    return hashed


# Each worker's transaction, before its COPY: the coordinator's snapshot, then the settings every
# value is printed under. Each worker scans on its own from the table's first block (no parallel
# plan, whose rows come in any order, and not from wherever another scan of the table happens
# to be), so each month's lines come in the table's order on every run.
SESSION_SETTINGS = (
    "SET LOCAL TimeZone = 'Europe/London'",
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL extra_float_digits = 1",
    "SET LOCAL client_encoding = 'UTF8'",
    "SET LOCAL max_parallel_workers_per_gather = 0",
    "SET LOCAL synchronize_seqscans = off",
)


# libpq's connection parameters that have an environment variable, by keyword.
PSQL_ENVIRONMENT = {
    "host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "dbname": "PGDATABASE",
    "user": "PGUSER", "passfile": "PGPASSFILE", "require_auth": "PGREQUIREAUTH",
    "channel_binding": "PGCHANNELBINDING", "service": "PGSERVICE", "options": "PGOPTIONS",
    "sslmode": "PGSSLMODE", "sslnegotiation": "PGSSLNEGOTIATION", "requiressl": "PGREQUIRESSL",
    "sslcompression": "PGSSLCOMPRESSION", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
    "sslcertmode": "PGSSLCERTMODE", "sslrootcert": "PGSSLROOTCERT", "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR", "sslsni": "PGSSLSNI", "requirepeer": "PGREQUIREPEER",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION", "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME", "gsslib": "PGGSSLIB", "gssdelegation": "PGGSSDELEGATION",
    "target_session_attrs": "PGTARGETSESSIONATTRS", "load_balance_hosts": "PGLOADBALANCEHOSTS",
}  # fmt: skip


def psql_path() -> str | None:
    """The psql the workers run: `LGS_PSQL` if set (empty: none, read in this process), else
    the one on PATH, if any."""
    given = os.environ.get("LGS_PSQL")
    if given is not None:
        return given or None
    return shutil.which("psql")


@contextlib.contextmanager
def psql_environment(dsn: str | None) -> Iterator[dict[str, str] | None]:
    """psql's environment for `dsn`: the same connection as `open_connection` makes, or None when
    the DSN has a setting psql cannot take from its environment."""
    from psycopg.conninfo import conninfo_to_dict

    parts = {k: str(v) for k, v in conninfo_to_dict(dsn or "").items()}
    password = parts.pop("password", None)
    parts.pop("application_name", None)
    parts.pop("connect_timeout", None)
    dbname = parts.get("dbname", "")
    if (
        set(parts) - set(PSQL_ENVIRONMENT)
        or "=" in dbname
        or "://" in dbname
        or "\n" in (password or "")
    ):
        yield None
        return
    env = dict(os.environ)
    env.update({PSQL_ENVIRONMENT[k]: v for k, v in parts.items()})
    env.update(PGAPPNAME=APPLICATION, PGCONNECT_TIMEOUT="10")
    if password is None:
        yield env
        return
    env.pop("PGPASSWORD", None)
    private = tempfile.mkdtemp(prefix="lgs-fast-")
    try:
        passfile = Path(private, "pgpass")
        escaped = password.replace("\\", "\\\\").replace(":", "\\:")
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"*:*:*:*:{escaped}\n")
        env["PGPASSFILE"] = str(passfile)
        yield env
    finally:
        shutil.rmtree(private, ignore_errors=True)


def snapshot_transaction(conn: Any) -> None:
    """Read-only REPEATABLE READ: every query of the export sees one snapshot of the table."""
    import psycopg

    conn.read_only = True
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ


def set_session(conn: Any) -> None:
    # UK time for every timestamp comparison and conversion, whatever the server's or the
    # DSN's TimeZone; values printed the same on every server.
    conn.execute("SET LOCAL TimeZone = 'Europe/London'")
    conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
    conn.execute("SET LOCAL extra_float_digits = 1")
