"""Benchmarks: ``uv run python -m bench`` runs them all and writes bench/results.md."""
