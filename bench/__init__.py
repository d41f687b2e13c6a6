"""Benchmarks: timings live here, never in tests (docs/design.md, "Timings")."""
