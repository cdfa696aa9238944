"""Templated trial text whose parts agree: titles, summaries, criteria, outcomes and arms name the trial's own
condition and drugs, so the linker and the text models see coherent records, not word salad.

``TrialText`` is drawn once per trial and shared by all its registrations (a cross-registered trial has the
same title everywhere, as in reality); each registry module renders it in its own layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trialpanorama.synth.settings import Rng
from trialpanorama.synth.trials import Trial
from trialpanorama.synth.vocab import _uninvert, condition_spelling, drug_spelling

_PHASE_WORDS = {
    "EARLY_PHASE1": "Phase 0",
    "PHASE1": "Phase 1",
    "PHASE1/PHASE2": "Phase 1/2",
    "PHASE2": "Phase 2",
    "PHASE2/PHASE3": "Phase 2/3",
    "PHASE3": "Phase 3",
    "PHASE4": "Phase 4",
    "NA": "",
    "": "",
}
_MASK_WORDS = {
    "NONE": "Open-Label",
    "SINGLE": "Single-Blind",
    "DOUBLE": "Double-Blind",
    "TRIPLE": "Triple-Blind",
    "QUADRUPLE": "Double-Blind",
    "": "",
}
_MEASURES = {
    "C04": [
        "Overall survival",
        "Progression-free survival",
        "Objective response rate (RECIST 1.1)",
        "Duration of response",
        "Pathological complete response rate",
        "Disease-free survival",
    ],
    "C14": [
        "Time to first major adverse cardiovascular event",
        "Change in systolic blood pressure",
        "Change in left ventricular ejection fraction",
        "All-cause mortality",
    ],
    "C18": [
        "Change from baseline in HbA1c",
        "Change in fasting plasma glucose",
        "Change in body weight",
        "Change in LDL cholesterol",
    ],
    "C01": [
        "Clinical cure rate at test-of-cure visit",
        "Time to viral clearance",
        "Microbiological eradication rate",
        "28-day mortality",
    ],
    "C10": [
        "Change from baseline in EDSS score",
        "Annualized relapse rate",
        "Change in MoCA score",
        "Seizure frequency per 28 days",
        "Change in pain intensity (NRS)",
    ],
    "F03": [
        "Change from baseline in HAM-D total score",
        "Change in PANSS total score",
        "Response rate (CGI-I)",
        "Change in GAD-7 score",
    ],
    "C08": [
        "Change in FEV1",
        "Annualized rate of moderate or severe exacerbations",
        "Change in 6-minute walk distance",
    ],
    "default": [
        "Change from baseline in disease activity score",
        "Proportion of participants in remission",
        "Quality of life (EQ-5D-5L)",
        "Change in symptom score",
        "Time to treatment failure",
    ],
}
_SAFETY = [
    "Number of participants with treatment-emergent adverse events",
    "Incidence of serious adverse events",
    "Number of participants with laboratory abnormalities",
    "Maximum plasma concentration (Cmax)",
    "Area under the concentration-time curve (AUC)",
]
_TIME = [
    "Week 12",
    "Week 24",
    "Week 52",
    "Baseline to week 26",
    "Up to 2 years",
    "Day 28",
    "Month 6",
    "Up to 5 years",
    "Baseline, week 4, week 8 and week 12",
    "From randomization until death, up to 60 months",
]
_INCLUSION = [
    "Age {age} years or older at the time of signing informed consent",
    "Confirmed diagnosis of {cond} according to current guidelines",
    "Documented {cond} for at least {n} months before screening",
    "Eastern Cooperative Oncology Group (ECOG) performance status of 0 or 1",
    "Adequate hepatic, renal and bone marrow function",
    "Women of childbearing potential must have a negative pregnancy test",
    "Willing and able to comply with scheduled visits, treatment plan and laboratory tests",
    "Stable dose of background therapy for {cond} for at least {n} weeks",
    "Body mass index between 18 and 40 kg/m2",
    "Signed written informed consent",
]
_EXCLUSION = [
    "Known hypersensitivity to {drug} or any of its excipients",
    "Previous treatment with {drug} within {n} months",
    "Participation in another interventional clinical trial within {n} weeks",
    "Pregnant or breastfeeding women",
    "Severe renal impairment (eGFR < 30 mL/min/1.73 m2)",
    "Active hepatitis B or C infection, or known HIV infection",
    "History of malignancy within the past 5 years other than {cond}",
    "Any condition that, in the opinion of the investigator, would interfere with the evaluation of {drug}",
    "Uncontrolled hypertension or unstable angina",
    "Major surgery within {n} weeks before enrolment",
]
_AE_TERMS = [
    "Nausea",
    "Headache",
    "Fatigue",
    "Diarrhoea",
    "Vomiting",
    "Dizziness",
    "Rash",
    "Pyrexia",
    "Cough",
    "Anaemia",
    "Neutropenia",
    "Thrombocytopenia",
    "Arthralgia",
    "Back pain",
    "Insomnia",
    "Constipation",
    "Hypertension",
    "Nasopharyngitis",
    "Upper respiratory tract infection",
    "Urinary tract infection",
    "Pneumonia",
    "Sepsis",
    "Alanine aminotransferase increased",
    "Decreased appetite",
    "Peripheral oedema",
    "Dyspnoea",
    "Pruritus",
    "Abdominal pain",
    "Myalgia",
    "Hypokalaemia",
    "Atrial fibrillation",
    "Febrile neutropenia",
    "Pulmonary embolism",
    "Deep vein thrombosis",
    "Syncope",
    "Fall",
    "Hyperglycaemia",
    "Injection site reaction",
    "Influenza",
    "Bronchitis",
    "Anxiety",
    "Depression",
    "Tachycardia",
    "Hypotension",
    "Acute kidney injury",
    "Cellulitis",
    "Gastroenteritis",
    "Dehydration",
]
_ORGANS = [
    "Gastrointestinal disorders",
    "Nervous system disorders",
    "General disorders",
    "Infections and infestations",
    "Blood and lymphatic system disorders",
    "Skin and subcutaneous tissue disorders",
    "Cardiac disorders",
    "Respiratory, thoracic and mediastinal disorders",
    "Investigations",
    "Vascular disorders",
]
_FILLER = [
    "The study will be conducted at {sites} sites and participants will be followed up for the duration of the trial.",
    "Safety will be monitored by an independent data monitoring committee that reviews unblinded data at prespecified "
    "intervals.",
    "Participants will attend study visits at screening, baseline and at regular intervals thereafter, where vital signs, "
    "laboratory tests and questionnaires will be collected.",
    "The sample size provides 80% power to detect a clinically relevant difference at a two-sided significance level "
    "of 5%, allowing for a dropout rate of 15%.",
    "Secondary analyses will examine the durability of the effect and its consistency across prespecified subgroups "
    "defined by age, sex and baseline severity.",
    "Adverse events will be coded using MedDRA and summarised by system organ class and preferred term.",
    "Pharmacokinetic samples will be drawn at prespecified time points in a subset of participants.",
    "An intention-to-treat analysis will be performed, with sensitivity analyses for missing data using multiple "
    "imputation.",
]


@dataclass
class TrialText:
    condition_names: list[str]  # written spellings, aligned with trial.conditions
    drug_names: list[str]  # written spellings, aligned with trial.drugs
    drug_doses: list[str]
    brief_title: str
    official_title: str
    acronym: str | None
    summary: str
    description: str
    inclusion: list[str]
    exclusion: list[str]
    primary: list[tuple[str, str]]
    secondary: list[tuple[str, str]]
    arms: list[dict[str, Any]]  # {label, type, description, drugs (indexes into trial.drugs) / placebo}


def _cond_phrase(name: str) -> str:
    return _uninvert(name)


def draw_text(rng: Rng, t: Trial, conf: dict[str, Any], category: str) -> TrialText:
    cond_names = [condition_spelling(rng, c, conf) for c in t.conditions]
    mgs = [rng.choice((5, 10, 20, 40, 50, 100, 150, 200, 300, 500)) for _ in t.drugs]
    drug_names = [drug_spelling(rng, d, conf, mg) for d, mg in zip(t.drugs, mgs, strict=True)]
    doses = [f"{mg} mg" for mg in mgs]
    cond = _cond_phrase(t.conditions[0].name)
    drug = t.drugs[0].name if t.drugs else None
    phase = _PHASE_WORDS.get(t.phase, "")
    if t.study_type == "OBSERVATIONAL":
        brief = rng.choice(
            [
                "{c} Outcomes Registry",
                "A Prospective Cohort Study of Patients With {c}",
                "Long-term Follow-up of Patients With {c}",
                "Biomarkers of Progression in {c}",
            ]
        ).format(c=cond)
        official = f"A Multicentre, Prospective, Observational Study of Disease Course and Outcomes in Patients With {cond}"
    elif drug:
        comp = "Placebo" if t.placebo else ("Standard of Care" if len(t.drugs) == 1 else t.drugs[1].name)
        brief = rng.choice(
            [
                "{d} Versus {p} in {c}",
                "Study of {d} in Participants With {c}",
                "Efficacy and Safety of {d} in Patients With {c}",
                "{d} for the Treatment of {c}",
            ]
        ).format(d=drug, p=comp, c=cond)
        design = ", ".join(
            w
            for w in (
                phase,
                "Randomized" if t.allocation == "RANDOMIZED" else "",
                _MASK_WORDS.get(t.masking, ""),
                "Multicenter",
            )
            if w
        )
        official = (
            f"A {design} Study to Evaluate the Efficacy and Safety of {drug}"
            + (f" Compared With {comp}" if t.allocation == "RANDOMIZED" else "")
            + f" in Adults With {cond}"
        )
    else:
        brief = rng.choice(
            [
                "Exercise Programme for {c}",
                "Nurse-led Intervention in {c}",
                "Digital Self-management Support for {c}",
                "Surgical Versus Conservative Care in {c}",
            ]
        ).format(c=cond)
        official = f"A Randomised Controlled Trial of a Complex Intervention for Adults With {cond}"
    acronym = None
    if rng.chance(0.35):
        acronym = "".join(w[0] for w in brief.split() if w[0].isalpha())[:6].upper() + f"-{t.idx % 100}"

    sites = max(1, t.n_locations)
    paras = [
        f"The purpose of this study is to evaluate {'the efficacy and safety of ' + drug if drug else 'outcomes'} "
        f"in participants with {cond}."
    ]
    summary = " ".join(paras + [rng.choice(_FILLER).format(sites=sites)])
    n_par = rng.span(conf["sizes"]["description_paragraphs"])
    desc = [
        f"{cond} remains a major cause of morbidity. "
        + (
            f"{drug} has shown promising activity in earlier studies, and this trial tests whether it improves "
            f"outcomes in {cond.lower()}."
            if drug
            else "This study describes its natural history."
        )
    ]
    desc += [rng.choice(_FILLER).format(sites=sites) for _ in range(n_par)]
    description = "\n\n".join(desc)

    drug_word = drug or "the study intervention"
    fill = {"cond": cond.lower(), "drug": drug_word, "age": t.min_age, "n": rng.choice((3, 4, 6, 8, 12))}
    n_items = rng.span(conf["sizes"]["criteria_items"])
    inclusion = [s.format(**fill) for s in rng.sample(_INCLUSION, min(len(_INCLUSION), max(2, n_items // 2)))]
    exclusion = [
        s.format(**fill) for s in rng.sample(_EXCLUSION, min(len(_EXCLUSION), max(2, n_items - n_items // 2)))
    ]

    measures = _MEASURES.get(category, _MEASURES["default"])
    primary = [
        (
            rng.choice(_SAFETY) if t.phase in ("PHASE1", "EARLY_PHASE1") else rng.choice(measures),
            rng.choice(_TIME),
        )
    ]
    n_sec = rng.span(conf["sizes"]["secondary_outcomes"])
    secondary = [(rng.choice(measures + _SAFETY), rng.choice(_TIME)) for _ in range(n_sec)]

    arms: list[dict[str, Any]] = []
    if t.drugs:
        label = " + ".join(
            f"{t.drugs[i].name} {doses[i]}" for i in range(len(t.drugs) if not t.placebo else 1)
        )
        arms.append(
            {
                "label": label,
                "type": "EXPERIMENTAL",
                "drugs": list(range(len(t.drugs) if not t.placebo else 1)),
                "description": f"Participants receive {label} once daily.",
            }
        )
        if t.placebo:
            arms.append(
                {
                    "label": "Placebo",
                    "type": "PLACEBO_COMPARATOR",
                    "drugs": [],
                    "placebo": True,
                    "description": f"Participants receive placebo matching {t.drugs[0].name}.",
                }
            )
        elif t.allocation == "RANDOMIZED" and len(t.drugs) == 1:
            arms.append(
                {
                    "label": "Standard of care",
                    "type": "ACTIVE_COMPARATOR",
                    "drugs": [],
                    "description": f"Usual care for {cond.lower()}.",
                }
            )
    elif t.study_type == "OBSERVATIONAL":
        arms.append({"label": f"Patients with {cond}", "type": "", "drugs": [], "description": ""})
    else:
        arms.append(
            {
                "label": "Intervention",
                "type": "EXPERIMENTAL",
                "drugs": [],
                "behavioral": brief,
                "description": f"A structured programme for {cond.lower()}.",
            }
        )
        arms.append(
            {"label": "Usual care", "type": "NO_INTERVENTION", "drugs": [], "description": "Usual care."}
        )
    return TrialText(
        cond_names,
        drug_names,
        doses,
        brief,
        official,
        acronym,
        summary,
        description,
        inclusion,
        exclusion,
        primary,
        secondary,
        arms,
    )


def adverse_event_terms(rng: Rng, n: int) -> list[tuple[str, str]]:
    return [(rng.choice(_AE_TERMS), rng.choice(_ORGANS)) for _ in range(n)]
