"""The shared body of the three trial-design multiple-choice tasks (arm, eligibility, endpoint design).

Each of those modules names the trial part it asks about and how to render it; the rest (candidates,
distractors matched on condition MeSH + phase with fallbacks, prompt, parsing, scoring) is the same and
lives here so the three stay identical in method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trialpanorama.tasks import mc, trial_text
from trialpanorama.tasks.base import Record, answer_json, load_json, mc_messages, parse_choice
from trialpanorama.tasks.metrics import choice_scores


def collect(ctx: Any, option_fn: Callable[[dict[str, Any], int], str]) -> list[Record]:
    """One candidate per trial that has the part; groups: condition+phase, condition, phase, any."""
    max_chars = int(ctx.cfg["multiple_choice"]["option_max_chars"])
    out = []
    for uid, t in ctx.data.trials.items():
        option = option_fn(t, max_chars)
        if not option:
            continue
        cond, phase = trial_text.condition_group(t), t.get("phase") or ""
        groups = [f"{cond}|{phase}" if cond else None, cond or None, phase or None, ""]
        out.append(Record(uid, [uid], [], {"option": option}, extra={"groups": groups}))
    return out


def assemble(name: str, question: str, part: str, rec: Record, pool: list[Record], ctx: Any,
             barred: Any) -> dict[str, Any] | None:
    trial = ctx.data.trials[rec.key]
    context = {"trial": trial_text.description(trial)}
    if part != "endpoints":
        context["trial"]["primary_endpoints"] = trial_text.primary_endpoints(trial)
    return mc.assemble(rec, pool, ctx, barred, name, int(ctx.cfg["multiple_choice"]["n_options"]),
                       question, context)


def to_messages(sample: dict[str, Any], instruction: str) -> tuple[list[dict[str, str]], str]:
    inp, ref = load_json(sample["input"]), load_json(sample["reference"])
    question = inp["question"] + "\n\nTrial:\n" + "\n".join(f"- {k}: {v}" for k, v in inp["trial"].items())
    messages = mc_messages(question, inp["options"], instruction)
    thinking = f"Option {ref['answer_choice']} is the one consistent with this trial's title, conditions and design."
    answer = answer_json({"step_by_step_thinking": thinking, "answer_choice": ref["answer_choice"]})
    return messages, answer



def parse(text: str | None) -> str:
    return parse_choice(text)


def score(predictions: list[str], references: list[Any]) -> dict[str, float]:
    return choice_scores(predictions, [load_json(r)["answer_choice"] for r in references])
