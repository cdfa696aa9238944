"""One trial's facts, drawn from conf/synth.yaml: what every registration and paper of the trial agrees on.

A ``Trial`` is registry-neutral (canonical ctgov enums, dates as numbers); the format modules render it in
each registry's words. It is drawn from its own ``Rng`` (seeded by world seed + trial index) so that adding
shards or workers never changes it.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from trialpanorama.synth.settings import Rng
from trialpanorama.synth.vocab import Descriptor, Drug, Vocabulary

_CITIES = [
    ("Boston", "Massachusetts", "United States", 42.36, -71.06),
    ("Houston", "Texas", "United States", 29.76, -95.37),
    ("Chicago", "Illinois", "United States", 41.88, -87.63),
    ("Seattle", "Washington", "United States", 47.61, -122.33),
    ("Berlin", "", "Germany", 52.52, 13.40),
    ("Munich", "Bavaria", "Germany", 48.14, 11.58),
    ("Paris", "", "France", 48.86, 2.35),
    ("Lyon", "", "France", 45.76, 4.84),
    ("London", "", "United Kingdom", 51.51, -0.13),
    ("Manchester", "", "United Kingdom", 53.48, -2.24),
    ("Toronto", "Ontario", "Canada", 43.65, -79.38),
    ("Madrid", "", "Spain", 40.42, -3.70),
    ("Milan", "", "Italy", 45.46, 9.19),
    ("Beijing", "Beijing", "China", 39.90, 116.40),
    ("Shanghai", "Shanghai", "China", 31.23, 121.47),
    ("Guangzhou", "Guangdong", "China", 23.13, 113.26),
    ("Tokyo", "", "Japan", 35.68, 139.69),
    ("Osaka", "", "Japan", 34.69, 135.50),
    ("Sydney", "New South Wales", "Australia", -33.87, 151.21),
    ("Melbourne", "Victoria", "Australia", -37.81, 144.96),
    ("Auckland", "", "New Zealand", -36.85, 174.76),
    ("São Paulo", "SP", "Brazil", -23.55, -46.63),
    ("Mumbai", "Maharashtra", "India", 19.08, 72.88),
    ("New Delhi", "Delhi", "India", 28.61, 77.21),
    ("Amsterdam", "", "Netherlands", 52.37, 4.90),
    ("Leuven", "", "Belgium", 50.88, 4.70),
    ("Warsaw", "", "Poland", 52.23, 21.01),
    ("Seoul", "", "Korea, Republic of", 37.57, 126.98),
    ("Tel Aviv", "", "Israel", 32.09, 34.78),
    ("Copenhagen", "", "Denmark", 55.68, 12.57),
    ("Stockholm", "", "Sweden", 59.33, 18.07),
    ("Mexico City", "", "Mexico", 19.43, -99.13),
    ("Tehran", "", "Iran (Islamic Republic of)", 35.69, 51.39),
    ("Bangkok", "", "Thailand", 13.76, 100.50),
    ("Lagos", "", "Nigeria", 6.52, 3.38),
    ("Cape Town", "", "South Africa", -33.92, 18.42),
    ("Nairobi", "", "Kenya", -1.29, 36.82),
    ("Kampala", "", "Uganda", 0.35, 32.58),
    ("Cairo", "", "Egypt", 30.04, 31.24),
    ("Dublin", "", "Ireland", 53.35, -6.26),
]
CITIES_BY_COUNTRY: dict[str, list[tuple[str, str, str, float, float]]] = {}
for _c in _CITIES:
    CITIES_BY_COUNTRY.setdefault(_c[2], []).append(_c)

_INDUSTRY = [
    "Novagen",
    "Meridian",
    "Aurora",
    "Helix",
    "Corvant",
    "Bayfield",
    "Lumira",
    "Orion",
    "Vantis",
    "Zephyr",
    "Kestrel",
    "Arbor",
    "Solenne",
    "Calder",
    "Pyxis",
    "Tessaro",
    "Halvard",
    "Quintara",
    "Noventis",
    "Sirelo",
]
_INDUSTRY_SUFFIX = ["Pharmaceuticals", "Pharma", "Therapeutics", "Biosciences", "Biotech", "Life Sciences"]
_ACADEMIC = [
    "University of {city}",
    "{city} University Hospital",
    "{city} Medical Center",
    "{city} Cancer Institute",
    "National Institute of Health Research {country}",
    "{city} Children's Hospital",
    "{city} Clinical Research Unit",
]


@dataclass
class Trial:
    idx: int
    key: str
    study_type: str
    phase: str  # canonical, "PHASE2/PHASE3"; "NA" for not applicable; "" for observational
    allocation: str
    masking: str
    purpose: str
    model: str
    status: str
    why_stopped: str | None
    why_class: str | None
    conditions: list[Descriptor]
    drugs: list[Drug]
    sponsor: str
    sponsor_class: str
    org_study_id: str
    registered: dt.date
    start: dt.date
    completion: dt.date
    last_update: dt.date
    enrollment: int
    enrollment_actual: bool
    sex: str
    min_age: int
    max_age: int | None
    countries: list[str]
    n_locations: int
    has_results: bool
    placebo: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def phases(self) -> list[str]:
        return self.phase.split("/") if self.phase else []

    @property
    def stopped(self) -> bool:
        return self.status in ("TERMINATED", "WITHDRAWN", "SUSPENDED")


def _registration_year(rng: Rng, conf: dict[str, Any]) -> int:
    d = conf["dates"]
    first, last, g = int(d["first_year"]), int(d["last_year"]), float(d["growth"])
    # Inverse-CDF draw from weights exp(g * (year - first)).
    u = rng.random()
    span = last - first + 1
    x = math.log(1 + u * (math.exp(g * span) - 1)) / g
    return min(last, first + int(x))


def _add_months(d: dt.date, months: int) -> dt.date:
    m = d.month - 1 + months
    return dt.date(d.year + m // 12, m % 12 + 1, min(d.day, 28))


def _sponsor(rng: Rng, sponsor_class: str, countries: list[str]) -> str:
    if sponsor_class == "INDUSTRY":
        return f"{rng.choice(_INDUSTRY)} {rng.choice(_INDUSTRY_SUFFIX)}"
    if sponsor_class == "NIH":
        return rng.choice(
            [
                "National Cancer Institute (NCI)",
                "National Heart, Lung, and Blood Institute (NHLBI)",
                "National Institute of Allergy and Infectious Diseases (NIAID)",
            ]
        )
    country = countries[0]
    city = rng.choice(CITIES_BY_COUNTRY.get(country) or _CITIES)[0]
    return rng.choice(_ACADEMIC).format(city=city, country=country)


def draw_trial(rng: Rng, idx: int, registry: str, vocab: Vocabulary, conf: dict[str, Any]) -> Trial:
    """Every fact of one trial whose primary registration is in ``registry``."""
    des, st = conf["design"], conf["status"]
    study_type = rng.weighted(des["study_type"])
    if registry == "EU CTR":
        study_type = "INTERVENTIONAL"
    interventional = study_type == "INTERVENTIONAL"
    phase = rng.weighted(des["phase"]) if interventional else ""
    if registry == "EU CTR" and phase in ("NA", "EARLY_PHASE1"):
        phase = "PHASE1" if phase == "EARLY_PHASE1" else "PHASE3"
    allocation = rng.weighted(des["allocation"]) if interventional else ""
    model = rng.weighted(des["model"]) if interventional else ""
    if allocation == "NA":
        model = "SINGLE_GROUP"
    masking = rng.weighted(des["masking"]) if interventional else ""
    if model == "SINGLE_GROUP":
        masking, allocation = "NONE", "NA"
    purpose = rng.weighted(des["purpose"]) if interventional else ""

    year = _registration_year(rng, conf)
    status = rng.weighted(st["weights"])
    if status in st["open_statuses"] and year < int(st["open_after_year"]):
        year = rng.randint(int(st["open_after_year"]), int(conf["dates"]["last_year"]))
    registered = dt.date(year, rng.randint(1, 12), rng.randint(1, 28))
    start = _add_months(registered, rng.randint(-4, 6))
    duration = rng.lognormal_count(float(conf["dates"]["duration_months_median"]), 0.6, 3, 180)
    completion = _add_months(start, duration)
    last_update = min(
        _add_months(completion, rng.randint(0, 14)), dt.date(int(conf["dates"]["last_year"]), 10, 1)
    )
    last_update = max(last_update, registered)

    why = why_class = None
    if status in ("TERMINATED", "WITHDRAWN", "SUSPENDED"):
        why_class = rng.weighted(st["why_stopped_classes"])
        why = rng.choice(st["why_stopped"][why_class])

    ekey = phase if interventional else study_type
    median, sigma = conf["enrollment"].get(ekey or "NA", conf["enrollment"]["NA"])
    enrollment = 0 if status == "WITHDRAWN" else rng.lognormal_count(float(median), float(sigma), 1, 200_000)
    if status == "TERMINATED":
        enrollment = max(1, int(enrollment * rng.uniform(0.05, 0.7)))

    n_cond = int(rng.weighted(des["conditions_per_trial"]))
    first = vocab.conditions[rng.randrange(len(vocab.conditions))]
    conditions = [first]
    # Further conditions from the same branch when possible (a trial's conditions belong together).
    branch = vocab.category[first.name]
    for _ in range(n_cond - 1):
        c = vocab.conditions[rng.randrange(len(vocab.conditions))]
        if vocab.category[c.name] == branch and c not in conditions:
            conditions.append(c)
    drugs: list[Drug] = []
    if study_type != "OBSERVATIONAL":
        for _ in range(int(rng.weighted(des["drugs_per_trial"]))):
            d = vocab.drugs[rng.randrange(len(vocab.drugs))]
            if d not in drugs:
                drugs.append(d)

    pool = conf["countries"].get(registry) or conf["countries"]["default"]
    n_countries = (
        1
        if registry not in ("ClinicalTrials.gov", "EU CTR")
        else min(len(pool), 1 + int(rng.expovariate(1.2)))
    )
    countries = sorted(set(rng.sample(pool, min(n_countries, len(pool)))))
    if registry == "ClinicalTrials.gov" and rng.chance(0.55):
        countries = sorted(set(countries) | {"United States"})
    loc = conf["sizes"]["locations"]
    lm, ls = loc.get(phase.split("/")[-1] if phase else "default", loc["default"])
    n_locations = rng.lognormal_count(float(lm), float(ls), 1, 600)
    sponsor_class = rng.weighted(des["sponsor_class"])
    sponsor = _sponsor(rng, sponsor_class, countries)
    min_age = rng.choice((18, 18, 18, 18, 12, 40, 50, 65, 2, 6))
    max_age = rng.choice((None, None, 65, 75, 80, 85, 17)) if min_age >= 18 else rng.choice((17, 18, 12))
    if max_age is not None and max_age <= min_age:
        max_age = None
    has_results = (
        registry == "ClinicalTrials.gov"
        and interventional
        and status in ("COMPLETED", "TERMINATED")
        and rng.chance(float(st["has_results_share"]))
    )
    return Trial(
        idx=idx,
        key=f"T{idx:08d}",
        study_type=study_type,
        phase=phase,
        allocation=allocation,
        masking=masking,
        purpose=purpose,
        model=model,
        status=status,
        why_stopped=why,
        why_class=why_class,
        conditions=conditions,
        drugs=drugs,
        sponsor=sponsor,
        sponsor_class=sponsor_class,
        org_study_id=f"{''.join(w[0] for w in sponsor.split()[:3]).upper()}-{year % 100:02d}-{idx % 10000:04d}",
        registered=registered,
        start=start,
        completion=completion,
        last_update=last_update,
        enrollment=enrollment,
        enrollment_actual=status in ("COMPLETED", "TERMINATED", "WITHDRAWN"),
        sex=rng.weighted(conf["ictrp_vocab"]["sex_weights"]),
        min_age=min_age,
        max_age=max_age,
        countries=countries,
        n_locations=n_locations,
        has_results=has_results,
        placebo=bool(drugs) and allocation == "RANDOMIZED" and rng.chance(float(des["placebo_share"])),
    )
