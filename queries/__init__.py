"""The SQL engine's queries, one DuckDB SQL file per analysis, installed as lgs_fast.queries."""
