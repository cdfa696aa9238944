"""Plain-text renderings of a trial's parts, shared by the trial tasks' prompts and options."""

from __future__ import annotations

from typing import Any

from trialpanorama.tasks.base import truncate


def conditions(trial: dict[str, Any]) -> list[str]:
    """Registry condition names (the sponsor's words), de-duplicated in order."""
    out: list[str] = []
    for c in trial.get("conditions") or []:
        name = (c.get("condition_name") or "").strip()
        if c.get("origin") != "ctgov_derived" and name and name not in out:
            out.append(name)
    return out


def mesh_ids(trial: dict[str, Any]) -> list[str]:
    return sorted({c["condition_mesh_id"] for c in trial.get("conditions") or [] if c.get("condition_mesh_id")})


def condition_group(trial: dict[str, Any]) -> str:
    """The condition key distractors are matched on: first MeSH id, else the first lower-cased name."""
    ids = mesh_ids(trial)
    if ids:
        return ids[0]
    names = conditions(trial)
    return names[0].lower() if names else ""


def design(trial: dict[str, Any]) -> dict[str, Any]:
    """The design fields the study's prompts use (None fields dropped)."""
    keys = ["study_type", "phase", "allocation", "intervention_model", "primary_purpose", "masking",
            "number_of_arms"]
    return {k: trial.get(k) for k in keys if trial.get(k) not in (None, "")}


def description(trial: dict[str, Any], max_chars: int = 2000) -> dict[str, Any]:
    """Title, conditions, design and brief summary: a trial without its arms, criteria or endpoints."""
    out: dict[str, Any] = {"title": trial.get("title") or trial.get("official_title") or "",
                           "conditions": conditions(trial), **design(trial)}
    if trial.get("abstract"):
        out["brief_summary"] = truncate(trial["abstract"], max_chars)
    return out


def arms(trial: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"group_type": a.get("group_type"), "title": a.get("arm_label"),
             "description": a.get("description") or "",
             "interventions": list(a.get("intervention_names") or [])}
            for a in trial.get("arms") or [] if a.get("arm_label")]


def arms_text(trial: dict[str, Any], max_chars: int = 1500) -> str:
    parts = []
    for a in arms(trial):
        s = f"{a['title']} ({a['group_type'] or 'arm'})"
        if a["interventions"]:
            s += ": " + ", ".join(a["interventions"])
        if a["description"]:
            s += " - " + a["description"]
        parts.append(s)
    return truncate("; ".join(parts), max_chars)


def criteria_text(trial: dict[str, Any], max_chars: int = 1500) -> str:
    e = trial.get("eligibility") or {}
    inc, exc = e.get("inclusion_criteria") or [], e.get("exclusion_criteria") or []
    if inc or exc:
        text = "Inclusion: " + "; ".join(inc) + ("\nExclusion: " + "; ".join(exc) if exc else "")
    else:
        text = e.get("criteria") or ""
    return truncate(text, max_chars)


def eligibility(trial: dict[str, Any], max_chars: int = 3000) -> dict[str, Any]:
    e = trial.get("eligibility") or {}
    out = {"criteria": criteria_text(trial, max_chars), "sex": e.get("sex") or trial.get("sex"),
           "min_age": e.get("min_age", trial.get("min_age")), "max_age": e.get("max_age", trial.get("max_age")),
           "healthy_volunteers": e.get("healthy_volunteers", trial.get("healthy_volunteers"))}
    return {k: v for k, v in out.items() if v not in (None, "")}


def primary_endpoints(trial: dict[str, Any]) -> list[str]:
    out = []
    for e in sorted(trial.get("endpoints") or [], key=lambda e: (e.get("seq") or 0)):
        if (e.get("endpoint_type") or "").lower() == "primary" and e.get("measure"):
            out.append(e["measure"] + (f" [{e['time_frame']}]" if e.get("time_frame") else ""))
    return out


def endpoints_text(trial: dict[str, Any], max_chars: int = 1500) -> str:
    return truncate("; ".join(primary_endpoints(trial)), max_chars)
