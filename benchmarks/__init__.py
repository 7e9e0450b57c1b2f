"""Benchmarks and the pandas reference (see benchmarks/README.md)."""
