"""The task registry: the eight task names and ``load_task(name)`` -> the task's module.

Like lm-evaluation-harness, a task is found by name; adding a ninth means one module and one line here
(and its table in schemas.py).
"""

from __future__ import annotations

import importlib
from types import ModuleType

TASKS: tuple[str, ...] = (
    "study_search", "study_screening", "evidence_summary", "arm_design", "eligibility_criteria_design",
    "endpoint_design", "sample_size_estimation", "trial_completion_assessment",
)
REQUIRED = ("NAME", "VERSION", "KIND", "collect", "assemble", "build", "to_messages", "parse", "score")


def load_task(name: str) -> ModuleType:
    """The module of task ``name`` (raises KeyError for an unknown name)."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    mod = importlib.import_module(f"trialpanorama.tasks.{name}")
    missing = [a for a in REQUIRED if not hasattr(mod, a)]
    if missing:
        raise TypeError(f"task module {name} lacks {missing}")
    return mod
