"""WHO ICTRP records of every non-US registry (formats.md §3): the 63-column no-header export CSV and the search
portal's ``Trials_downloaded_from_ICTRP`` XML, each in the registry's own vocabulary (conf/synth.yaml
``ictrp_vocab``, the inverse of what conf/ictrp.yaml maps).

A record is first built as {export column: value} (None = the export's literal ``NULL``), then written as
one CSV line or one ``<Trial>`` element.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from trialpanorama.synth.settings import Rng
from trialpanorama.synth.text import TrialText
from trialpanorama.synth.trials import Trial

# Names of the export's 63 columns (formats.md §3a), in order.
EXPORT_COLUMNS: tuple[str, ...] = (
    "TrialID",
    "last_updated",
    "SecondaryIDs",
    "public_title",
    "scientific_title",
    "url",
    *(f"public_contact_{f}" for f in ("firstname", "lastname", "address", "email", "tel", "affiliation")),
    *(f"scientific_contact_{f}" for f in ("firstname", "lastname", "address", "email", "tel", "affiliation")),
    "study_type",
    "study_design",
    "phase",
    "Date_registration",
    "Date_enrollement",
    "Target_size",
    "Recruitment_status",
    "Primary_sponsor",
    "Secondary_sponsors",
    "Source_Support",
    "Countries",
    "Conditions",
    "Interventions",
    "Age_min",
    "Age_max",
    "Gender",
    "Inclusion_Criteria",
    "Exclusion_Criteria",
    "Primary_Outcome",
    "Secondary_Outcomes",
    "Bridging_flag",
    "Bridged_type",
    "Childs",
    "type_enrolment",
    "Retrospective_flag",
    "results_actual_enrollment",
    "results_url_link",
    "results_summary",
    "results_date_posted",
    "results_date_first_publication",
    "results_baseline_char",
    "results_participant_flow",
    "results_adverse_events",
    "results_outcome_measures",
    "results_url_protocol",
    "IPD_plan",
    "IPD_description",
    "results_date_completed",
    "results_yes_no",
    "Ethics_Status",
    "Ethics_Approval_Date",
    "ethics_contact_name",
    "ethics_contact_address",
    "ethics_contact_phone",
    "ethics_contact_email",
)
assert len(EXPORT_COLUMNS) == 63

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_URL = {
    "EU CTR": "https://www.clinicaltrialsregister.eu/ctr-search/search?query=eudract_number:{b}",
    "ChiCTR": "https://www.chictr.org.cn/showproj.html?proj={n}",
    "ISRCTN": "https://www.isrctn.com/{i}",
    "ANZCTR": "https://anzctr.org.au/{i}.aspx",
    "CTRI": "http://www.ctri.nic.in/Clinicaltrials/pmaindet2.php?{n}",
    "DRKS": "https://drks.de/search/en/trial/{i}",
    "JPRN": "https://center6.umin.ac.jp/cgi-open-bin/ctr_e/ctr_view.cgi?recptno={b}",
    "IRCT": "https://en.irct.ir/trial/{n}",
    "CRiS": "https://cris.nih.go.kr/cris/search/detailSearch.do?seq={n}",
    "PACTR": "https://pactr.samrc.ac.za/TrialDisplay.aspx?TrialID={n}",
    "TCTR": "https://www.thaiclinicaltrials.org/show/{i}",
}
_PHASE_FLAGS = (
    ("Human pharmacology (Phase I)", "PHASE1"),
    ("Therapeutic exploratory (Phase II)", "PHASE2"),
    ("Therapeutic confirmatory - (Phase III)", "PHASE3"),
    ("Therapeutic use (Phase IV)", "PHASE4"),
)


def dmy(d) -> str:
    return f"{d.day:02d}/{d.month:02d}/{d.year:04d}"


def long_date(d) -> str:
    return f"{d.day} {_MONTHS[d.month - 1]} {d.year}"


def ethics_date(d) -> str:
    return f"{_MONTHS[d.month - 1][:3]} {d.day} {d.year} 12:00AM"


def _vocab(conf: dict[str, Any], table: str, registry: str, value: str) -> str:
    v = conf["ictrp_vocab"][table]
    return (v.get(registry) or v["default"]).get(value) or v["default"][value]


def _phase(t: Trial, registry: str, conf: dict[str, Any]) -> str | None:
    if not t.phase:
        return None
    if registry == "EU CTR":
        ticked = set(t.phases)
        return "".join(f"{label}: {'yes' if code in ticked else 'no'}<br>" for label, code in _PHASE_FLAGS)
    return _vocab(conf, "phase", registry, t.phase)


def _design(t: Trial, registry: str) -> str | None:
    if t.study_type != "INTERVENTIONAL":
        return "Observational: cohort study" if registry != "ChiCTR" else "Cohort study"
    rnd = t.allocation == "RANDOMIZED"
    if registry == "EU CTR":
        return (
            f"Controlled: {'yes' if rnd else 'no'}<br>Randomised: {'yes' if rnd else 'no'}<br>"
            f"Open: {'yes' if t.masking == 'NONE' else 'no'}<br>Single blind: {'yes' if t.masking == 'SINGLE' else 'no'}<br>"
            f"Double blind: {'yes' if t.masking in ('DOUBLE', 'TRIPLE', 'QUADRUPLE') else 'no'}<br>"
            f"Parallel group: {'yes' if t.model == 'PARALLEL' else 'no'}<br>"
            f"Cross over: {'yes' if t.model == 'CROSSOVER' else 'no'}<br>Other: no<br>"
        )
    if registry == "ANZCTR":
        mask = "Open (masking not used)" if t.masking == "NONE" else "Blinded (masking used)"
        alloc = "Randomised controlled trial" if rnd else "Non-randomised trial"
        return (
            f"Purpose: {t.purpose.replace('_', ' ').title() or 'Treatment'}; Allocation: {alloc}; Masking: {mask};"
            f"Assignment: {'Parallel' if t.model == 'PARALLEL' else 'Single group'};Type of endpoint: Efficacy;"
        )
    words = [
        "Randomized" if rnd else ("Single arm" if t.model == "SINGLE_GROUP" else "Non-randomized"),
        "parallel" if t.model == "PARALLEL" else "crossover" if t.model == "CROSSOVER" else "",
        {
            "NONE": "open-label",
            "SINGLE": "single blind",
            "DOUBLE": "double blind",
            "TRIPLE": "triple blind",
            "QUADRUPLE": "quadruple blind",
        }.get(t.masking, ""),
        "controlled trial",
    ]
    return " ".join(w for w in words if w)


def _target(t: Trial, registry: str, rng: Rng) -> str:
    if registry == "ChiCTR" and t.allocation == "RANDOMIZED" and t.enrollment > 1:
        half = t.enrollment // 2
        return f"Case series:{half};Control group:{t.enrollment - half};"
    if registry == "EU CTR":
        return f"F.4.2.2 In the whole clinical trial {t.enrollment}"
    return str(t.enrollment)


def _age(years: int | None, registry: str, maximum: bool) -> str:
    if years is None:
        return (
            "No limit"
            if registry in ("ANZCTR", "ISRCTN", "ChiCTR")
            else "N/A"
            if registry != "JPRN"
            else "Not applicable"
        )
    if registry == "JPRN":
        return f"{years}years-old"
    if registry == "ChiCTR":
        return f"{years}"
    if registry == "CTRI":
        return f"{years}.00 Year(s)"
    return f"{years} Years" if registry != "IRCT" else f"{years} years"


def _interventions(t: Trial, text: TrialText, registry: str) -> str | None:
    if registry == "EU CTR" and t.drugs:
        blocks = []
        for i, d in enumerate(t.drugs):
            trade = f"<br>Trade Name: {d.brands[0].title()}" if d.brands else ""
            blocks.append(
                f"{trade}<br>Product Name: {text.drug_names[i]}<br>Pharmaceutical Form: Film-coated tablet"
                f"<br>INN or Proposed INN: {d.name.upper()}<br>Other descriptive name: {d.name.upper()}<br>"
            )
        return ";".join(blocks)
    parts = []
    for arm in text.arms:
        names = [
            text.drug_names[i] + (f" {text.drug_doses[i]}" if registry in ("ChiCTR", "CTRI") else "")
            for i in arm["drugs"]
        ]
        if arm.get("placebo"):
            names.append("Placebo")
        if arm.get("behavioral"):
            names.append(arm["behavioral"])
        if not names:
            continue
        if registry == "ChiCTR":
            parts.append(
                f"{'Case series' if arm['type'] == 'EXPERIMENTAL' else 'Control group'}:{' + '.join(names)}"
            )
        elif registry in ("ISRCTN", "ANZCTR") and arm.get("behavioral"):
            parts.append(f"Behavioural: {' + '.join(names)}")
        else:
            parts += [f"{'Drug' if not arm.get('behavioral') else 'Behavioral'}: {n}" for n in names]
    return ";".join(parts) or None


def _conditions(t: Trial, text: TrialText, registry: str, rng: Rng) -> str:
    if registry == "EU CTR":
        out = []
        # The same (synthetic) MedDRA coding in every member-state record of the trial.
        for name, d in zip(text.condition_names, t.conditions, strict=True):
            code = 10_000_000 + int(d.ui[1:]) % 90_000
            out.append(
                f"{name}<br>MedDRA version: 20.0Level: PTClassification code {code}Term: {name}"
                f"System Organ Class: {10_000_000 + int(d.tree_numbers[0][1:3]) * 1000} - Disorders"
            )
        return ";".join(out)
    return ";".join(text.condition_names)


def export_record(
    rng: Rng,
    t: Trial,
    text: TrialText,
    conf: dict[str, Any],
    registry: str,
    trial_id: str,
    bare: str,
    secondary_ids: list[str],
    bridge: dict[str, str] | None,
    countries: list[str],
) -> dict[str, str | None]:
    """{export column: value or None} for one registration (one EU CTR member state)."""
    crit_in = "Inclusion criteria: <br>" + "<br>".join(f"{i + 1}. {c}" for i, c in enumerate(text.inclusion))
    crit_ex = "Exclusion criteria: <br>" + "<br>".join(f"{i + 1}. {c}" for i, c in enumerate(text.exclusion))
    if registry == "EU CTR":
        m, f = text.primary[0]
        primary = (
            f"Main Objective: To evaluate {m.lower()};Primary end point(s): {m};"
            f"Timepoint(s) of evaluation of this end point: {f}"
        )
        secondary = "Secondary end point(s): " + ";".join(m for m, _ in text.secondary)
    else:
        primary = ";".join(f"{m} ({f})" for m, f in text.primary)
        secondary = ";".join(f"{m} ({f})" for m, f in text.secondary) or None
    number = trial_id.rsplit("/", 1)[-1][-6:]
    rec: dict[str, str | None] = dict.fromkeys(EXPORT_COLUMNS)
    rec.update(
        {
            "TrialID": trial_id,
            "last_updated": long_date(t.last_update),
            "SecondaryIDs": ";".join(secondary_ids)
            if secondary_ids
            else rng.choice(("Nil known", None, "NIL")),
            "public_title": text.brief_title,
            "scientific_title": text.official_title
            + (f" - {text.acronym}" if text.acronym and registry == "EU CTR" else ""),
            "url": _URL.get(registry, "https://trialsearch.who.int/Trial2.aspx?TrialID={i}").format(
                i=trial_id, b=bare, n=number
            ),
            "study_type": _vocab(conf, "study_type", registry, t.study_type),
            "study_design": _design(t, registry),
            "phase": _phase(t, registry, conf),
            "Date_registration": dmy(t.registered),
            "Date_enrollement": dmy(t.start),
            "Target_size": _target(t, registry, rng),
            "Recruitment_status": _vocab(conf, "recruitment_status", registry, t.status),
            "Primary_sponsor": t.sponsor,
            "Source_Support": t.sponsor,
            "Countries": ";".join(countries),
            "Conditions": _conditions(t, text, registry, rng),
            "Interventions": _interventions(t, text, registry),
            "Age_min": _age(t.min_age, registry, False),
            "Age_max": _age(t.max_age, registry, True),
            "Gender": _vocab(conf, "gender", registry, t.sex),
            "Inclusion_Criteria": crit_in,
            "Exclusion_Criteria": crit_ex,
            "Primary_Outcome": primary,
            "Secondary_Outcomes": secondary,
            "type_enrolment": "Actual" if t.enrollment_actual else "Anticipated",
            "Retrospective_flag": "Yes" if t.start < t.registered else "No",
            "results_yes_no": "No",
            "Ethics_Status": "Approved",
            "Ethics_Approval_Date": ethics_date(t.registered),
        }
    )
    if bridge:
        rec.update(bridge)
    return rec


def csv_line(rec: dict[str, str | None], columns: tuple[str, ...] = EXPORT_COLUMNS) -> str:
    """One export line: every value double-quoted (quotes doubled), missing values as unquoted NULL."""
    return (
        ",".join(
            "NULL" if rec.get(c) is None else '"' + str(rec[c]).replace('"', '""') + '"' for c in columns
        )
        + "\n"
    )


# Portal XML element names for the export columns it carries (formats.md §3b).
_PORTAL = (
    ("TrialID", "TrialID"),
    ("last_updated", "Last_Refreshed_on"),
    ("public_title", "Public_title"),
    ("scientific_title", "Scientific_title"),
    ("Primary_sponsor", "Primary_sponsor"),
    ("Date_registration", "Date_registration"),
    ("url", "web_address"),
    ("Recruitment_status", "Recruitment_Status"),
    ("Age_min", "Inclusion_agemin"),
    ("Age_max", "Inclusion_agemax"),
    ("Gender", "Inclusion_gender"),
    ("Date_enrollement", "Date_enrollement"),
    ("Target_size", "Target_size"),
    ("study_type", "Study_type"),
    ("study_design", "Study_design"),
    ("phase", "Phase"),
    ("Countries", "Countries"),
    ("Inclusion_Criteria", "Inclusion_Criteria"),
    ("Exclusion_Criteria", "Exclusion_Criteria"),
    ("Conditions", "Condition"),
    ("Interventions", "Intervention"),
    ("Primary_Outcome", "Primary_outcome"),
    ("Secondary_Outcomes", "Secondary_outcome"),
    ("Source_Support", "Source_Support"),
    ("Bridged_type", "Bridged_type"),
    ("results_yes_no", "results_yes_no"),
)


def portal_trial(
    rec: dict[str, str | None], registry: str, internal_number: int, acronym: str | None, export_date: str
) -> str:
    """One ``<Trial>`` of the portal export; each secondary id is its own ``<Secondary_ID>`` element."""
    reg = rec.get("Date_registration") or ""
    parts = [f"<Trial><Internal_Number>{internal_number}</Internal_Number>"]
    for col, el in _PORTAL:
        v = rec.get(col)
        if col == "TrialID" and v is None:
            continue
        parts.append(f"<{el}>{escape(v) if v is not None else ''}</{el}>")
        if col == "scientific_title" and acronym:
            parts.append(f"<Acronym>{escape(acronym)}</Acronym>")
        if col == "Date_registration" and reg.count("/") == 2:
            d, m, y = reg.split("/")
            parts.append(
                f"<Date_registration3>{y}{m}{d}</Date_registration3><Export_date>{export_date}</Export_date>"
                f"<Source_Register>{escape(registry)}</Source_Register>"
            )
    sec = rec.get("SecondaryIDs")
    ids = [s for s in (sec or "").split(";") if s and s.lower() not in ("nil known", "nil")]
    parts.append(f"<other_records>{'Yes' if ids else 'No'}</other_records>")
    parts += [f"<Secondary_ID>{escape(s)}</Secondary_ID>" for s in ids]
    parts.append(
        f"<Bridging_flag_truefalse>{'True' if rec.get('Bridging_flag') else 'False'}</Bridging_flag_truefalse>"
    )
    parts.append("</Trial>\n")
    return "".join(parts)


PORTAL_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<Trials_downloaded_from_ICTRP>\n'
PORTAL_TAIL = "</Trials_downloaded_from_ICTRP>\n"
