"""The one place where SQL dialects differ: `queries/*.sql` (DuckDB's dialect, the source of
truth) translated into Spark SQL.

sqlglot parses each query as DuckDB and writes it as Spark; the rewrites below cover what it
does not translate, or not with DuckDB's meaning:

- `getvariable('x')` becomes a reference to the session variable `system.session.x`, which
  `lgs_fast.engines.spark` declares with a type and sets from a bound value: options never reach the
  text of a query;
- a call of a table macro (`rfm_at(expr)`) becomes the macro's query with its parameter
  replaced by the argument, as DuckDB expands it;
- DuckDB's lists count from 1 and accept negative positions (`list[-1]` is the last element),
  and a position out of range (0 included) is NULL: Spark's `try_element_at` does all that,
  where Spark's `list[i]` counts from 0;
- `list(x ORDER BY x)`, whose ORDER BY sqlglot drops, is the sorted `collect_list`;
- `max(x, n)`, DuckDB's list of the n largest values, is the first n of the sorted list;
- `regexp_full_match`, which Spark lacks, is `rlike` anchored at both ends;
- `epoch_us(ts)` is `unix_micros` of the time read as UTC (the session's zone; lake times
  carry no zone);
- `count(DISTINCT t)` of a whole row `t` of a CTE counts distinct rows, nulls included, as a
  struct of its columns;
- `quantile_cont(x, q)` is `percentile(x, q)` (both interpolate linearly); `isodow` is
  `date_part('DAYOFWEEK_ISO', …)` (sqlglot's form counts Sunday as 2); `to_days`/`to_months`
  are interval constructors; a cast around `unnest` casts the list instead (Spark allows no
  expression around a generator); `hash` is `xxhash64` (it only finds candidates, compared in
  full after);
- `HUGEINT`, the type of exact money sums, is `DECIMAL(38,0)`;
- DuckDB's `[NOT] MATERIALIZED` CTE hints, which only steer DuckDB's planner, are dropped;
  the other way round, a Spark hint written as a comment right after a SELECT
  (`SELECT /*+ REPARTITION(customer_id) */ …`), which DuckDB reads as a comment, is given to
  Spark as the hint it is.

A query is also staged (`staged`): each common table expression it reads more than once is
computed first and kept as a view, as DuckDB computes it once where Spark would inline it at
every use.

What remains is kept out of the queries by writing them portably, with DuckDB's results
unchanged: explicit DOUBLE division of exact sums (DuckDB would widen a HUGEINT silently, Spark
would keep a DECIMAL), the standard UNPIVOT form, `array_length` for lists.
"""

from __future__ import annotations

from collections import Counter
from functools import cache

import sqlglot
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.transforms import move_ctes_to_top_level


class _DuckDB(DuckDB):
    """DuckDB as written: sqlglot shifts literal list positions to its 0-based form (and -1,
    DuckDB's last element, to -2) but not computed ones; kept as written, every position is
    translated alike, to Spark's element_at, which counts as DuckDB does."""

    INDEX_OFFSET = 0


# The variable namespace of Spark's session variables: qualified, so no column can shadow one.
_SESSION = ("system", "session")


def _variable(name: str) -> exp.Column:
    return exp.column(name, table=_SESSION[1], db=_SESSION[0])


def _variables(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Anonymous) and node.name.lower() == "getvariable":
        return _variable(node.expressions[0].name)
    return node


def _rewrite(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Bracket) and len(node.expressions) == 1:
        # DuckDB's 1-based (and from-the-end negative) positions: Spark's element_at.
        # Out of range is NULL in DuckDB: try_element_at, with position 0 (an error even
        # there) as NULL.
        position = exp.cast(node.expressions[0], exp.DataType.build("INT"))
        return exp.func(
            "try_element_at", node.this, exp.Nullif(this=position, expression=exp.Literal.number(0))
        )
    if isinstance(node, exp.ArrayAgg) and isinstance(node.this, exp.Order):
        order = node.this
        keys = order.expressions
        if len(keys) == 1 and keys[0].this == order.this:
            descending = bool(keys[0].args.get("desc"))
            return exp.func(
                "sort_array",
                exp.func("collect_list", order.this),
                exp.true() if not descending else exp.false(),
            )
        raise ValueError(f"no Spark translation of an ordered list aggregate: {node.sql('duckdb')}")
    if isinstance(node, exp.Max) and node.args.get("count") is not None:
        # max(x, n): the n largest values, largest first.
        count = node.args["count"]
        ordered = exp.func("sort_array", exp.func("collect_list", node.this), exp.false())
        return exp.func("slice", ordered, exp.Literal.number(1), count)
    if isinstance(node, exp.RegexpFullMatch):
        text, pattern = node.this, node.expression
        anchored = exp.func("concat", exp.Literal.string("^(?:"), pattern, exp.Literal.string(")$"))
        return exp.RegexpLike(this=text, expression=anchored)
    if isinstance(node, exp.Anonymous) and node.name.lower() == "epoch_us":
        (ts,) = node.expressions
        return exp.func("unix_micros", exp.cast(ts, exp.DataType.build("TIMESTAMP_LTZ")))
    if isinstance(node, exp.Anonymous) and node.name.lower() == "to_months":
        (months,) = node.expressions
        return exp.func("make_ym_interval", exp.Literal.number(0), months)
    if isinstance(node, exp.PercentileCont) and not isinstance(node.parent, exp.WithinGroup):
        # quantile_cont(x, q): Spark's percentile interpolates linearly, as DuckDB does.
        return exp.func("percentile", node.this, node.expression)
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Explode):
        # unnest(list)::T: Spark allows no expression around a generator; the list is cast.
        element = node.to
        return exp.Explode(
            this=exp.cast(
                node.this.this,
                exp.DataType.build(f"ARRAY<{element.sql('spark')}>", dialect="spark"),
            )
        )
    if isinstance(node, exp.DayOfWeekIso):
        # Monday 1 .. Sunday 7 (sqlglot's Spark form of it counts Sunday as 2).
        return exp.func("date_part", exp.Literal.string("DAYOFWEEK_ISO"), node.this)
    if isinstance(node, exp.ToDays):
        return exp.func("make_dt_interval", node.this)
    if isinstance(node, exp.Anonymous) and node.name.lower() == "hash":
        # Only to find candidate duplicates, compared in full after: 64 bits, few collisions.
        return exp.func("xxhash64", *node.expressions)
    if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.INT128:
        # HUGEINT, the exact money sums' type: Spark's widest exact integer is DECIMAL(38,0).
        return exp.DataType.build("DECIMAL(38,0)")
    if isinstance(node, exp.CTE):
        node.set("materialized", None)
    return node


def _spark_hints(tree: exp.Expression) -> exp.Expression:
    """Each SELECT's comment `/*+ HINT(args) */` (sqlglot keeps its text) as Spark's hint."""
    for select in tree.find_all(exp.Select):
        for comment in select.comments or []:
            if comment.startswith("+"):
                hint = sqlglot.parse_one(f"SELECT /*{comment}*/ 1", read="spark").args.get("hint")
                if not isinstance(hint, exp.Hint):
                    raise ValueError(f"not a Spark hint: /*{comment}*/")
                select.set("hint", hint)
    return tree


def _count_distinct_rows(tree: exp.Expression) -> exp.Expression:
    """`count(DISTINCT t)` of a CTE's whole row `t`: count of distinct structs of its columns."""
    ctes = {cte.alias: cte.this for cte in tree.find_all(exp.CTE)}
    for distinct in list(tree.find_all(exp.Distinct)):
        (arg,) = distinct.expressions or [None]
        if isinstance(arg, exp.Column) and not arg.table and arg.name in ctes:
            columns = [exp.column(c) for c in ctes[arg.name].named_selects]
            distinct.set("expressions", [exp.func("struct", *columns)])
    return tree


def _expand_macros(tree: exp.Expression, macros: dict[str, tuple[str, str]]) -> exp.Expression:
    """Each `FROM name(arg)` of a table macro replaced by its body, the parameter by `arg`."""
    for call in list(tree.find_all(exp.Table)):
        function = call.this
        if not isinstance(function, exp.Anonymous) or function.name not in macros:
            continue
        parameter, body = macros[function.name]
        (argument,) = function.expressions
        expanded = sqlglot.parse_one(body, read=_DuckDB)
        for column in list(expanded.find_all(exp.Column)):
            if not column.table and column.name == parameter:
                column.replace(argument.copy())
        alias = call.args.get("alias")
        call.replace(exp.Subquery(this=expanded, alias=alias or exp.TableAlias(this=function.name)))
    return tree


def _translated(query: str, macros: tuple[tuple[str, str, str], ...]) -> exp.Expression:
    tree = sqlglot.parse_one(query, read=_DuckDB)
    tree = _expand_macros(tree, {name: (param, body) for name, param, body in macros})
    tree = _count_distinct_rows(tree)
    # Variables first; then the rewrites until none applies, since a node rebuilt around its
    # arguments hides them from the pass that rebuilt it.
    tree = tree.transform(_variables)
    text = None
    while text != (text := tree.sql(dialect="duckdb")):
        tree = tree.transform(_rewrite)
    return _spark_hints(tree)


@cache
def to_spark(query: str, macros: tuple[tuple[str, str, str], ...] = ()) -> str:
    """The Spark SQL of a DuckDB query; `macros` are (name, parameter, body) table macros."""
    return _translated(query, macros).sql(dialect="spark", comments=False)


@cache
def staged(
    query: str, prefix: str, macros: tuple[tuple[str, str, str], ...] = ()
) -> tuple[tuple[tuple[str, str], ...], str]:
    """The Spark SQL of a DuckDB query in steps: (view, SQL) for each of its common table
    expressions that it reads more than once, to be computed first, in order, and kept as a
    view named `{prefix}__{name}` (two underscores: no table or view of the engine is named
    so); then the query itself, reading those views.

    DuckDB computes such an expression once; Spark inlines every deterministic one at each use
    (its optimizer rule InlineCTE), so `reversed_invoices` computed its candidate pairs four
    times. One marked `NOT MATERIALIZED`, which DuckDB also inlines so that filters reach
    through it, stays inline."""
    hints = {
        c.alias: c.args.get("materialized") for c in _ctes(sqlglot.parse_one(query, read=_DuckDB))
    }
    # Spark SQL has its common table expressions at the top (sqlglot moves them there when it
    # writes Spark): an expanded macro's (rfm_at's) are staged as the query's own.
    tree = move_ctes_to_top_level(_translated(query, macros))
    ctes = _ctes(tree)
    uses = Counter(t.name for t in tree.find_all(exp.Table) if not t.db)
    # A name defined twice (by a subquery, or a macro, as well) is left alone: a reference to it
    # may mean either.
    defined = Counter(c.alias for c in tree.find_all(exp.CTE))
    views = {
        c.alias: f"{prefix}__{c.alias}"
        for c in ctes
        if uses[c.alias] > 1 and hints.get(c.alias) is not False and defined[c.alias] == 1
    }
    if not views:
        return (), tree.sql(dialect="spark", comments=False)
    inline = [c for c in ctes if c.alias not in views]
    steps = []
    for cte in ctes:
        if cte.alias in views:
            body = _with_needed(_reading(cte.this.copy(), views), inline, views)
            steps.append((views[cte.alias], body.sql(dialect="spark", comments=False)))
    main = _reading(tree.copy(), views)
    for cte in _ctes(main):
        if cte.alias in views:
            with_ = cte.parent
            cte.pop()
            if with_ is not None and not with_.expressions:
                with_.pop()
    return tuple(steps), main.sql(dialect="spark", comments=False)


@cache
def reads(query: str, macros: tuple[tuple[str, str, str], ...] = ()) -> frozenset[str]:
    """The names of the tables and views a DuckDB query reads (its own common table expressions
    left out), and those the body of each of `macros` (name, parameter, body) it calls reads."""
    tree = sqlglot.parse_one(query, read=_DuckDB)
    defined = {c.alias for c in tree.find_all(exp.CTE)}
    tables = list(tree.find_all(exp.Table))
    names = {
        t.name
        for t in tables
        if not t.db and t.name not in defined and isinstance(t.this, exp.Identifier)
    }
    called = {t.this.name.lower() for t in tables if isinstance(t.this, exp.Anonymous)}
    for macro, _, body in macros:
        if macro in called:
            names |= reads(body, macros)
    return frozenset(names)


def _ctes(tree: exp.Expression) -> list[exp.CTE]:
    """The common table expressions of the query's own WITH (not those of its subqueries)."""
    return list(tree.ctes) if isinstance(tree, exp.Query) else []


def _reading(tree: exp.Expression, views: dict[str, str]) -> exp.Expression:
    """`tree` with each table named as a key of `views` read from that view instead, under its
    old name (so that columns it qualifies still resolve)."""
    for table in list(tree.find_all(exp.Table)):
        if not table.db and table.name in views:
            alias = table.alias or table.name
            table.replace(exp.to_table(views[table.name]).as_(alias))
    return tree


def _with_needed(
    body: exp.Expression, inline: list[exp.CTE], views: dict[str, str]
) -> exp.Expression:
    """`body` with the inline common table expressions it reads, directly or through one
    another, in their order."""
    by_name = {c.alias: c for c in inline}
    needed: set[str] = set()
    pending = [body]
    while pending:
        for table in pending.pop().find_all(exp.Table):
            if not table.db and table.name in by_name and table.name not in needed:
                needed.add(table.name)
                pending.append(by_name[table.name].this)
    for cte in inline:
        if cte.alias in needed:
            assert isinstance(body, exp.Query)
            body = body.with_(cte.alias, as_=_reading(cte.this.copy(), views), append=True)
    return body
