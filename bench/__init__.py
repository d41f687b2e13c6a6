"""Benchmarks: timings live here, never in tests (STYLE.md 12)."""
