"""Benchmarks of durable_sync and its local engine (``python -m benchmarks``); see docs/performance.md."""
