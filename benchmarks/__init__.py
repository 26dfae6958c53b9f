"""Benchmarks of taskbus; run them as scripts (see README.md)."""
