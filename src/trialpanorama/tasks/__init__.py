"""Benchmark and fine-tuning tasks built from the lake: one module per task (see registry.TASKS)."""
