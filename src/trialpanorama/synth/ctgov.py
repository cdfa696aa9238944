"""ClinicalTrials.gov API v2 study records (formats.md §1): the shape of the bulk ``ctg-studies.json.zip`` members.

Module and field order follow the API; MeSH ids in the derived browse modules are zero-padded to 10
characters as v2 writes them; ``resultsSection`` (participant flow, baseline, outcome measures, adverse
events) makes the long tail of large records.
"""

from __future__ import annotations

from typing import Any

from trialpanorama.synth.settings import Rng
from trialpanorama.synth.text import TrialText, adverse_event_terms
from trialpanorama.synth.trials import _CITIES, CITIES_BY_COUNTRY, Trial
from trialpanorama.synth.vocab import Vocabulary, padded_ui

_DRUG_TYPE = "DRUG"
_FACILITY = [
    "{city} University Hospital",
    "{city} General Hospital",
    "Research Site",
    "{city} Clinical Research Center",
    "{city} Cancer Center",
    "Site {n}",
    "{city} Medical University",
    "St. Mary's Hospital {city}",
]


def _month(d) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def _day(d) -> str:
    return d.isoformat()


def _age(years: int | None) -> str | None:
    return None if years is None else f"{years} Years"


def _std_ages(t: Trial) -> list[str]:
    out = []
    if t.min_age < 18:
        out.append("CHILD")
    if (t.max_age or 200) >= 18:
        out.append("ADULT")
    if (t.max_age or 200) >= 65:
        out.append("OLDER_ADULT")
    return out


def _locations(rng: Rng, t: Trial) -> list[dict[str, Any]]:
    out = []
    for n in range(t.n_locations):
        country = t.countries[n % len(t.countries)]
        city, state, _, lat, lon = rng.choice(CITIES_BY_COUNTRY.get(country) or _CITIES)
        loc: dict[str, Any] = {"facility": rng.choice(_FACILITY).format(city=city, n=1000 + n)}
        if t.status == "RECRUITING":
            loc["status"] = "RECRUITING"
        loc["city"] = city
        if state:
            loc["state"] = state
        loc["zip"] = f"{rng.randint(10000, 99999)}"
        loc["country"] = country
        loc["geoPoint"] = {
            "lat": round(lat + rng.uniform(-0.2, 0.2), 5),
            "lon": round(lon + rng.uniform(-0.2, 0.2), 5),
        }
        out.append(loc)
    return out


def _browse(vocab: Vocabulary, descriptors: list, prefix: str) -> dict[str, Any]:
    meshes = [{"id": padded_ui(d.ui), "term": d.name} for d in descriptors]
    ancestors: dict[str, Any] = {}
    for d in descriptors:
        for a in vocab.ancestors(d):
            ancestors.setdefault(a.ui, {"id": padded_ui(a.ui), "term": a.name})
    leaves = [
        {"id": f"M{int(d.ui[1:]) % 100000}", "name": d.name, "asFound": d.name, "relevance": "HIGH"}
        for d in descriptors
    ]
    leaves += [
        {"id": f"M{int(u[1:]) % 100000}", "name": a["term"], "relevance": "LOW"} for u, a in ancestors.items()
    ]
    branches = sorted({tn[:3] for d in descriptors for tn in d.tree_numbers})
    return {
        "meshes": meshes,
        "ancestors": list(ancestors.values()),
        "browseLeaves": leaves,
        "browseBranches": [{"abbrev": f"{prefix}{b}", "name": b} for b in branches],
    }


def _results(rng: Rng, t: Trial, text: TrialText, conf: dict[str, Any]) -> dict[str, Any]:
    groups = [
        {"id": f"FG{i:03d}", "title": a["label"], "description": a["description"]}
        for i, a in enumerate(text.arms)
    ]
    n = t.enrollment
    per = [max(1, n // max(1, len(groups)))] * len(groups)
    flow = {
        "groups": groups,
        "periods": [
            {
                "title": "Overall Study",
                "milestones": [
                    {
                        "type": "STARTED",
                        "achievements": [
                            {"groupId": g["id"], "numSubjects": str(k)}
                            for g, k in zip(groups, per, strict=True)
                        ],
                    },
                    {
                        "type": "COMPLETED",
                        "achievements": [
                            {"groupId": g["id"], "numSubjects": str(int(k * 0.85))}
                            for g, k in zip(groups, per, strict=True)
                        ],
                    },
                    {
                        "type": "NOT_COMPLETED",
                        "achievements": [
                            {"groupId": g["id"], "numSubjects": str(k - int(k * 0.85))}
                            for g, k in zip(groups, per, strict=True)
                        ],
                    },
                ],
            }
        ],
    }
    bgroups = [{"id": f"BG{i:03d}", "title": g["title"]} for i, g in enumerate(groups)]
    measures = []
    for m in [
        "Age, Continuous",
        "Sex: Female, Male",
        "Race (NIH/OMB)",
        "Region of Enrollment",
        "Body weight",
        "Baseline disease severity",
        "Duration of disease",
        "Prior therapies",
        "ECOG performance status",
        "Smoking status",
        "Body mass index",
        "Ethnicity (NIH/OMB)",
    ][: rng.span(conf["sizes"]["results_baseline_measures"])]:
        measures.append(
            {
                "title": m,
                "paramType": "MEAN",
                "dispersionType": "STANDARD_DEVIATION",
                "unitOfMeasure": "units",
                "classes": [
                    {
                        "categories": [
                            {
                                "measurements": [
                                    {
                                        "groupId": b["id"],
                                        "value": f"{rng.uniform(1, 80):.1f}",
                                        "spread": f"{rng.uniform(1, 15):.1f}",
                                    }
                                    for b in bgroups
                                ]
                            }
                        ]
                    }
                ],
            }
        )
    outcome_measures = []
    for kind, (measure, frame) in [("PRIMARY", text.primary[0])] + [("SECONDARY", s) for s in text.secondary]:
        outcome_measures.append(
            {
                "type": kind,
                "title": measure,
                "description": f"{measure} was assessed at {frame.lower()}.",
                "populationDescription": "Intention-to-treat population",
                "reportingStatus": "POSTED",
                "paramType": "MEAN",
                "dispersionType": "95% Confidence Interval",
                "unitOfMeasure": "units",
                "timeFrame": frame,
                "groups": [{"id": f"OG{i:03d}", "title": g["title"]} for i, g in enumerate(groups)],
                "denoms": [
                    {
                        "units": "Participants",
                        "counts": [{"groupId": f"OG{i:03d}", "value": str(k)} for i, k in enumerate(per)],
                    }
                ],
                "classes": [
                    {
                        "categories": [
                            {
                                "measurements": [
                                    {
                                        "groupId": f"OG{i:03d}",
                                        "value": f"{rng.uniform(-10, 60):.2f}",
                                        "lowerLimit": f"{rng.uniform(-20, 0):.2f}",
                                        "upperLimit": f"{rng.uniform(60, 90):.2f}",
                                    }
                                    for i in range(len(groups))
                                ]
                            }
                        ]
                    }
                ],
                "analyses": [
                    {
                        "groupIds": [f"OG{i:03d}" for i in range(len(groups))],
                        "nonInferiorityType": "SUPERIORITY",
                        "pValue": f"{rng.uniform(0.0001, 0.9):.4f}",
                        "statisticalMethod": "ANCOVA",
                    }
                ],
            }
        )

    def events(k: int, serious: bool) -> list[dict[str, Any]]:
        out = []
        for term, organ in adverse_event_terms(rng, k):
            out.append(
                {
                    "term": term,
                    "organSystem": organ,
                    "sourceVocabulary": "MedDRA (26.0)",
                    "assessmentType": "SYSTEMATIC_ASSESSMENT",
                    "stats": [
                        {
                            "groupId": f"EG{i:03d}",
                            "numEvents": rng.randint(0, 40),
                            "numAffected": rng.randint(0, 30),
                            "numAtRisk": k2,
                        }
                        for i, k2 in enumerate(per)
                    ],
                }
            )
        return out

    n_ae = rng.span(conf["sizes"]["results_adverse_events"])
    return {
        "participantFlowModule": flow,
        "baselineCharacteristicsModule": {"groups": bgroups, "measures": measures},
        "outcomeMeasuresModule": {"outcomeMeasures": outcome_measures},
        "adverseEventsModule": {
            "frequencyThreshold": "5",
            "timeFrame": "Up to 2 years",
            "eventGroups": [{"id": f"EG{i:03d}", "title": g["title"]} for i, g in enumerate(groups)],
            "seriousEvents": events(max(1, n_ae // 4), True),
            "otherEvents": events(n_ae, False),
        },
        "moreInfoModule": {
            "certainAgreement": {"piSponsorEmployee": False},
            "pointOfContact": {"title": "Clinical Trial Disclosure", "organization": t.sponsor},
        },
    }


def study_record(
    rng: Rng,
    t: Trial,
    text: TrialText,
    vocab: Vocabulary,
    conf: dict[str, Any],
    nct_id: str,
    secondary_ids: list[dict[str, str]],
    references: list[dict[str, str]],
) -> dict[str, Any]:
    """One study in API v2 shape."""
    ident: dict[str, Any] = {"nctId": nct_id, "orgStudyIdInfo": {"id": t.org_study_id}}
    if secondary_ids:
        ident["secondaryIdInfos"] = secondary_ids
    ident["organization"] = {"fullName": t.sponsor, "class": t.sponsor_class}
    ident["briefTitle"] = text.brief_title
    ident["officialTitle"] = text.official_title
    if text.acronym:
        ident["acronym"] = text.acronym
    status: dict[str, Any] = {"statusVerifiedDate": _month(t.last_update), "overallStatus": t.status}
    if t.status == "UNKNOWN":
        status["lastKnownStatus"] = "RECRUITING"
    if t.why_stopped:
        status["whyStopped"] = t.why_stopped
    done = "ACTUAL" if t.enrollment_actual else "ESTIMATED"
    status.update(
        {
            "expandedAccessInfo": {"hasExpandedAccess": False},
            "startDateStruct": {
                "date": _month(t.start) if rng.chance(0.6) else _day(t.start),
                "type": "ACTUAL" if t.status != "NOT_YET_RECRUITING" else "ESTIMATED",
            },
            "primaryCompletionDateStruct": {"date": _month(t.completion), "type": done},
            "completionDateStruct": {"date": _month(t.completion), "type": done},
            "studyFirstSubmitDate": _day(t.registered),
            "studyFirstSubmitQcDate": _day(t.registered),
            "studyFirstPostDateStruct": {"date": _day(t.registered), "type": "ACTUAL"},
            "lastUpdateSubmitDate": _day(t.last_update),
            "lastUpdatePostDateStruct": {"date": _day(t.last_update), "type": "ACTUAL"},
        }
    )
    sponsor: dict[str, Any] = {
        "responsibleParty": {"type": "SPONSOR"},
        "leadSponsor": {"name": t.sponsor, "class": t.sponsor_class},
    }
    if t.extra.get("collaborator"):
        sponsor["collaborators"] = [{"name": t.extra["collaborator"], "class": "OTHER"}]
    design: dict[str, Any] = {"studyType": t.study_type}
    if t.study_type == "INTERVENTIONAL":
        design["phases"] = t.phases
        info: dict[str, Any] = {
            "allocation": t.allocation,
            "interventionModel": t.model,
            "primaryPurpose": t.purpose,
            "maskingInfo": {"masking": t.masking},
        }
        if t.masking not in ("NONE", ""):
            info["maskingInfo"]["whoMasked"] = ["PARTICIPANT", "INVESTIGATOR"][: 1 + (t.masking != "SINGLE")]
        design["designInfo"] = info
    elif t.study_type == "OBSERVATIONAL":
        design["designInfo"] = {"observationalModel": "COHORT", "timePerspective": "PROSPECTIVE"}
    design["enrollmentInfo"] = {
        "count": t.enrollment,
        "type": "ACTUAL" if t.enrollment_actual else "ESTIMATED",
    }

    interventions: list[dict[str, Any]] = []
    arm_groups: list[dict[str, Any]] = []
    for arm in text.arms:
        names = [f"Drug: {text.drug_names[i]}" for i in arm["drugs"]]
        if arm.get("placebo"):
            names.append("Drug: Placebo")
        if arm.get("behavioral"):
            names.append(f"Behavioral: {arm['behavioral']}")
        group: dict[str, Any] = {"label": arm["label"]}
        if arm["type"]:
            group["type"] = arm["type"]
        if arm["description"]:
            group["description"] = arm["description"]
        if names:
            group["interventionNames"] = names
        arm_groups.append(group)
    for i, d in enumerate(t.drugs):
        item: dict[str, Any] = {
            "type": _DRUG_TYPE,
            "name": text.drug_names[i],
            "description": f"{d.name} {text.drug_doses[i]} administered orally once daily.",
            "armGroupLabels": [a["label"] for a in text.arms if i in a["drugs"]],
        }
        other = list(d.brands[:2]) + [f"{d.name[:3].upper()}-{100 + t.idx % 900}"]
        item["otherNames"] = other
        interventions.append(item)
    if any(a.get("placebo") for a in text.arms):
        interventions.append(
            {
                "type": "DRUG",
                "name": "Placebo",
                "description": "Matching placebo.",
                "armGroupLabels": ["Placebo"],
            }
        )
    for a in text.arms:
        if a.get("behavioral"):
            interventions.append(
                {"type": "BEHAVIORAL", "name": a["behavioral"], "armGroupLabels": [a["label"]]}
            )
    criteria = (
        "Inclusion Criteria:\n\n"
        + "\n".join(f"* {c}" for c in text.inclusion)
        + "\n\nExclusion Criteria:\n\n"
        + "\n".join(f"* {c}" for c in text.exclusion)
    )
    elig: dict[str, Any] = {
        "eligibilityCriteria": criteria,
        "healthyVolunteers": t.phase in ("PHASE1", "EARLY_PHASE1"),
        "sex": t.sex,
        "minimumAge": _age(t.min_age),
    }
    if t.max_age is not None:
        elig["maximumAge"] = _age(t.max_age)
    elig["stdAges"] = _std_ages(t)
    if t.study_type == "OBSERVATIONAL":
        elig["studyPopulation"] = f"Patients with {t.conditions[0].name} seen at participating centres."
        elig["samplingMethod"] = "NON_PROBABILITY_SAMPLE"
    protocol: dict[str, Any] = {
        "identificationModule": ident,
        "statusModule": status,
        "sponsorCollaboratorsModule": sponsor,
        "oversightModule": {
            "oversightHasDmc": t.phase in ("PHASE3", "PHASE2/PHASE3"),
            "isFdaRegulatedDrug": bool(t.drugs),
        },
        "descriptionModule": {"briefSummary": text.summary, "detailedDescription": text.description},
        "conditionsModule": {
            "conditions": text.condition_names,
            "keywords": [c.name.split(",")[0].lower() for c in t.conditions],
        },
        "designModule": design,
        "armsInterventionsModule": {
            "armGroups": arm_groups,
            **({"interventions": interventions} if interventions else {}),
        },
        "outcomesModule": {
            "primaryOutcomes": [
                {"measure": m, "description": f"{m} at {f.lower()}.", "timeFrame": f} for m, f in text.primary
            ],
            "secondaryOutcomes": [{"measure": m, "timeFrame": f} for m, f in text.secondary],
        },
        "eligibilityModule": elig,
        "contactsLocationsModule": {
            "overallOfficials": [
                {"name": "Study Director", "affiliation": t.sponsor, "role": "STUDY_DIRECTOR"}
            ],
            "locations": _locations(rng, t),
        },
    }
    if references:
        protocol["referencesModule"] = {"references": references}
    record: dict[str, Any] = {"protocolSection": protocol}
    if t.has_results:
        record["resultsSection"] = _results(rng, t, text, conf)
    derived: dict[str, Any] = {
        "miscInfoModule": {"versionHolder": conf["dates"]["version_holder"]},
        "conditionBrowseModule": _browse(vocab, t.conditions, "BC"),
    }
    if t.drugs:
        derived["interventionBrowseModule"] = _browse(vocab, [d.mesh for d in t.drugs], "BX")
    record["derivedSection"] = derived
    record["hasResults"] = t.has_results
    return record
