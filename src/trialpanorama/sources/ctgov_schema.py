"""The ClinicalTrials.gov API v2 study record, as far as the lake reads it, declared once.

Spark parses records against this schema (never inferred), so a field with the wrong JSON type (a string
where the API has a number, an object where it has a list) marks the record corrupt and sends it to
``rejects``. Fields not declared here are ignored; contact persons are deliberately absent.
"""

from __future__ import annotations

from typing import Any

S = "STRING"
I = "INT"  # noqa: E741
B = "BOOLEAN"

_DATE = {"date": S, "type": S}
_OUTCOME = [{"measure": S, "description": S, "timeFrame": S}]
_AE = [{
    "term": S, "organSystem": S, "sourceVocabulary": S, "assessmentType": S,
    "stats": [{"groupId": S, "numEvents": I, "numAffected": I, "numAtRisk": I}],
}]
_MESHES = {"meshes": [{"id": S, "term": S}]}

MODULES: dict[str, dict[str, Any]] = {
    "identificationModule": {
        "nctId": S, "nctIdAliases": [S],
        "orgStudyIdInfo": {"id": S, "type": S, "link": S},
        "secondaryIdInfos": [{"id": S, "type": S, "domain": S, "link": S}],
        "organization": {"fullName": S, "class": S},
        "briefTitle": S, "officialTitle": S, "acronym": S,
    },
    "statusModule": {
        "statusVerifiedDate": S, "overallStatus": S, "lastKnownStatus": S, "whyStopped": S,
        "startDateStruct": _DATE, "primaryCompletionDateStruct": _DATE, "completionDateStruct": _DATE,
        "studyFirstSubmitDate": S, "lastUpdatePostDateStruct": _DATE,
    },
    "sponsorCollaboratorsModule": {"leadSponsor": {"name": S, "class": S}, "collaborators": [{"name": S, "class": S}]},
    "descriptionModule": {"briefSummary": S, "detailedDescription": S},
    "conditionsModule": {"conditions": [S], "keywords": [S]},
    "designModule": {
        "studyType": S, "phases": [S],
        "designInfo": {
            "allocation": S, "interventionModel": S, "primaryPurpose": S,
            "maskingInfo": {"masking": S, "whoMasked": [S]}, "observationalModel": S, "timePerspective": S,
        },
        "enrollmentInfo": {"count": I, "type": S},
    },
    "armsInterventionsModule": {
        "armGroups": [{"label": S, "type": S, "description": S, "interventionNames": [S]}],
        "interventions": [{"type": S, "name": S, "description": S, "armGroupLabels": [S], "otherNames": [S]}],
    },
    "outcomesModule": {"primaryOutcomes": _OUTCOME, "secondaryOutcomes": _OUTCOME, "otherOutcomes": _OUTCOME},
    "eligibilityModule": {
        "eligibilityCriteria": S, "healthyVolunteers": B, "sex": S, "minimumAge": S, "maximumAge": S,
        "stdAges": [S], "studyPopulation": S, "samplingMethod": S,
    },
    "contactsLocationsModule": {"locations": [{"country": S}]},
    "referencesModule": {"references": [{"pmid": S, "type": S, "citation": S}]},
}

RESULTS: dict[str, Any] = {
    "participantFlowModule": {
        "groups": [{"id": S, "title": S, "description": S}],
        # numSubjects is a string in the API ("158"), unlike the integer counts elsewhere.
        "periods": [{"title": S, "milestones": [{"type": S, "achievements": [{"groupId": S, "numSubjects": S}]}]}],
    },
    "adverseEventsModule": {"seriousEvents": _AE, "otherEvents": _AE},
}

DERIVED: dict[str, Any] = {
    "miscInfoModule": {"versionHolder": S},
    "conditionBrowseModule": _MESHES,
    "interventionBrowseModule": _MESHES,
}

STUDY: dict[str, Any] = {
    "protocolSection": MODULES,
    "resultsSection": RESULTS,
    "derivedSection": DERIVED,
    "hasResults": B,
}


def to_ddl(node: Any) -> str:
    """Nested dict/list/type-name description -> Spark DDL type string (names back-quoted)."""
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return f"ARRAY<{to_ddl(node[0])}>"
    return "STRUCT<" + ", ".join(f"`{k}`: {to_ddl(v)}" for k, v in node.items()) + ">"


def record_ddl(with_corrupt_column: bool = True) -> str:
    """Top-level DDL of a study record for ``from_json``."""
    fields = [f"`{k}` {to_ddl(v)}" for k, v in STUDY.items()]
    if with_corrupt_column:
        fields.append("`_corrupt_record` STRING")
    return ", ".join(fields)
