"""Systematic reviews as the review tasks see them: sections, included studies, topical MeSH headings.

A review is a publication typed Systematic Review or Meta-Analysis (conf/tasks.yaml) with cites-relations.
Its included studies are the cited publications that report trials: linked to a trial by a reported_in
relation, or typed as a trial (Randomized Controlled Trial, Clinical Trial, ...) in PubMed; only those in
the lake's publications count (a paper outside the lake can be neither searched nor shown). Sections are
found by label (BACKGROUND, OBJECTIVES, SELECTION CRITERIA, AUTHORS' CONCLUSIONS, as Cochrane writes them)
or by NLM category (BACKGROUND, OBJECTIVE, CONCLUSIONS) when the label differs.
"""

from __future__ import annotations

from typing import Any

from trialpanorama.tasks.base import truncate

CHECK_TAGS = {  # MeSH check tags and age groups: on almost every paper, so useless for topic matching
    "D006801", "D008297", "D005260", "D000328", "D000368", "D002648", "D008875", "D000293", "D055815",
    "D000818", "D007223", "D000369", "D002675", "D007231", "D017418", "D000078182",
}


def sections(pub: dict[str, Any], conclusion_labels: list[str]) -> dict[str, str]:
    out: dict[str, list[str]] = {k: [] for k in ("background", "objectives", "selection_criteria", "conclusions")}
    concl = {c.upper() for c in conclusion_labels}
    for s in pub.get("abstract_sections") or []:
        label = (s.get("label") or "").upper().strip()
        cat = (s.get("nlm_category") or "").upper().strip()
        text = (s.get("text") or "").strip()
        if not text:
            continue
        if label in ("SELECTION CRITERIA", "ELIGIBILITY CRITERIA", "CRITERIA FOR CONSIDERING STUDIES"):
            out["selection_criteria"].append(text)
        elif label.startswith("OBJECTIVE") or label == "AIMS" or cat == "OBJECTIVE":
            out["objectives"].append(text)
        elif label == "BACKGROUND" or (cat == "BACKGROUND" and not label.startswith("METHOD")):
            out["background"].append(text)
        elif label in concl or cat == "CONCLUSIONS":
            out["conclusions"].append(text)
    return {k: " ".join(v) for k, v in out.items()}


def topical_mesh(pub: dict[str, Any]) -> list[str]:
    return sorted({m["descriptor_ui"] for m in pub.get("mesh_headings") or []
                   if m.get("descriptor_ui") and m["descriptor_ui"] not in CHECK_TAGS})


def mesh_names(pub: dict[str, Any]) -> list[str]:
    return sorted({m["descriptor_name"] for m in pub.get("mesh_headings") or []
                   if m.get("descriptor_ui") not in CHECK_TAGS | {None} and m.get("descriptor_name")})


def is_trial_publication(pmid: str, data: Any, trial_types: set[str]) -> bool:
    if pmid in data.pub_trials:
        return True
    pub = data.publications.get(pmid)
    return bool(pub) and any(p.get("ui") in trial_types for p in pub.get("publication_types") or [])


def reviews(ctx: Any) -> list[dict[str, Any]]:
    """Every review in the lake with its sections, included studies (in lake) and topical MeSH; cached."""
    if "reviews" in ctx.cache:
        return ctx.cache["reviews"]
    cfg, data = ctx.cfg, ctx.data
    review_types = set(cfg["review_publication_types"])
    trial_types = set(cfg["trial_publication_types"])
    labels = cfg["evidence_summary"]["conclusion_labels"]
    out = []
    for pmid, cited in sorted(data.review_cites.items()):
        pub = data.publications.get(pmid)
        if not pub or not any(p.get("ui") in review_types for p in pub.get("publication_types") or []):
            continue
        included = sorted(p for p in set(cited) if p in data.publications and p != pmid
                          and is_trial_publication(p, data, trial_types))
        trials = sorted({u for p in included for u in data.pub_trials.get(p, ())})
        out.append({"pmid": pmid, "title": pub.get("title") or "", "sections": sections(pub, labels),
                    "included": included, "cited": sorted(set(cited)), "trial_uids": trials,
                    "mesh": topical_mesh(pub), "mesh_names": mesh_names(pub)})
    ctx.cache["reviews"] = out
    return out


def review_input(rv: dict[str, Any], with_title: bool = True) -> dict[str, str]:
    s = rv["sections"]
    out = {k: s[k] for k in ("background", "objectives", "selection_criteria")}
    if with_title:
        out = {"title": rv["title"], **out}
    return {k: v for k, v in out.items() if v}


def study_card(pmid: str, data: Any, max_chars: int) -> dict[str, str]:
    pub = data.publications.get(pmid) or {}
    return {"PMID": pmid, "title": pub.get("title") or "",
            "abstract": truncate(pub.get("abstract"), max_chars)}


def trials_of(pmids: list[str], data: Any) -> list[str]:
    return sorted({u for p in pmids for u in data.pub_trials.get(p, ())})
