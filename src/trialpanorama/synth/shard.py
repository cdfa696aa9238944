"""One shard of the world: a contiguous block of trials, written to its own files with its own truth parts.

Everything that relates records (cross-registrations, near duplicates, grant groups, reviews and their
included trials) stays inside a shard, so shards are independent worker tasks and memory is bounded by the
shard size. Two passes: plan every trial of the shard (registrations, links, papers), then write.
"""

from __future__ import annotations

import gzip
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trialpanorama.synth import ctgov, ictrp, ids, pubmed
from trialpanorama.synth.settings import Rng, derive_seed
from trialpanorama.synth.text import _PHASE_WORDS, TrialText, draw_text
from trialpanorama.synth.trials import Trial, draw_trial
from trialpanorama.synth.vocab import Vocabulary, build_vocabulary

CTGOV = "ClinicalTrials.gov"
ZIP_DATE = (2025, 11, 3, 0, 0, 0)
CTGOV_DEFECTS = ("truncated JSON", "malformed NCT id", "missing NCT id", "wrong field type")
ICTRP_DEFECTS = ("wrong column count", "unknown registry id", "impossible date", "missing TrialID")
PUBMED_DEFECTS = ("missing PMID", "malformed PMID")


@dataclass
class Registration:
    registry: str
    trial_id: str  # as the registry / ICTRP writes it (EU CTR without member state)
    bare: str  # as other registries cite it
    role: str  # primary | secondary | near_duplicate
    cites: list[str] = field(default_factory=list)  # ids (bare) this record lists as secondary ids
    members: list[str] = field(default_factory=list)  # EU CTR member-state suffixes
    portal: bool = False
    defect: str | None = None
    files: list[str] = field(default_factory=list)
    record_ids: list[str] = field(default_factory=list)  # every record written (EU: one per member state)


@dataclass
class Planned:
    trial: Trial
    text: TrialText
    regs: list[Registration]
    utn: str | None = None
    grant: str | None = None
    papers: list[str] = field(default_factory=list)
    references: list[dict[str, str]] = field(default_factory=list)


def n_planted(n: int, conf: dict[str, Any], kinds: int) -> int:
    m = conf["malformed"]
    return max(1 if n >= int(m["min_records"]) else 0, math.floor(n * float(m["rate"]) / kinds))


class ShardWriter:
    """Plans and writes shard ``k`` (trials ``start .. start+count-1``) under ``out``."""

    def __init__(
        self, conf: dict[str, Any], seed: int, k: int, start: int, count: int, n_shards: int, out: Path
    ):
        self.conf, self.seed, self.k, self.start, self.count, self.out = conf, seed, k, start, count, out
        self.vocab: Vocabulary = build_vocabulary(conf, seed)
        self.rng = Rng(derive_seed(seed, "shard", k))
        suffix = "" if n_shards == 1 else f"-{k:04d}"
        self.zip_name = f"ctgov/ctg-studies{suffix}.json.zip"
        self.csv_name = f"ictrp/ictrp-export{suffix}.csv"
        self.xml_name = f"ictrp/ictrp-portal{suffix}.xml"
        self.pubmed_name = f"pubmed/pubmed26n{k + 1:04d}.xml.gz"
        self.pmid_next = int(conf["publications"]["pmid_base"]) + k * int(conf["shard_size"]) * 6
        self.truth: dict[str, list[dict[str, Any]]] = {
            n: [] for n in ("clusters", "records", "papers", "reviews", "malformed", "grants")
        }
        self.articles: list[pubmed.Article] = []
        self.ctgov_sizes: list[int] = []

    # -------------------------------------------------------------------------------------- planning
    def _new_pmid(self) -> str:
        self.pmid_next += 1
        return str(self.pmid_next)

    def _registration(self, rng: Rng, t: Trial, registry: str, slot: int, role: str) -> Registration:
        serial = t.idx * 8 + slot
        tid = ids.registry_id(registry, serial, t.registered.year, t.registered.month)
        reg = Registration(registry, tid, ids.bare_id(registry, tid), role)
        if registry == "EU CTR":
            n = 1
            while n < 6 and rng.chance(float(self.conf["registries"]["eu_member_states_p"])):
                n += 1
            reg.members = sorted(rng.sample(self.conf["registries"]["eu_member_states"], n))
        if registry != CTGOV:
            reg.portal = rng.chance(float(self.conf["registries"]["portal_xml_share"]))
        return reg

    def _defect_plan(self) -> dict[int, tuple[str, str]]:
        """Local trial index -> (source, defect) of the trials written as malformed records."""
        plan: dict[int, tuple[str, str]] = {}
        order = self.rng.sample(range(self.count), self.count)
        pos = 0
        for source, defects in (("ctgov", CTGOV_DEFECTS), ("ictrp", ICTRP_DEFECTS)):
            for defect in defects:
                for _ in range(n_planted(self.count, self.conf, len(defects))):
                    if pos < len(order):
                        plan[order[pos]] = (source, defect)
                        pos += 1
        return plan

    def plan(self) -> list[Planned]:
        conf, cross = self.conf, self.conf["cross_registration"]
        defects = self._defect_plan()
        planned: list[Planned] = []
        for j in range(self.count):
            idx = self.start + j
            rng = Rng(derive_seed(self.seed, "trial", idx))
            defect = defects.get(j)
            registry = rng.weighted(conf["registries"]["primary"])
            if defect:
                registry = CTGOV if defect[0] == "ctgov" else "ISRCTN"
            t = draw_trial(rng, idx, registry, self.vocab, conf)
            text = draw_text(rng, t, conf, self.vocab.category[t.conditions[0].name])
            regs = [self._registration(rng, t, registry, 0, "primary")]
            p = Planned(t, text, regs)
            if defect:
                regs[0].defect = defect[1]
                regs[0].portal = defect[1] == "missing TrialID"
                planned.append(p)
                continue
            if rng.chance(float(cross["share"])):
                for slot in range(1, 1 + int(rng.weighted(cross["extra"]))):
                    others = {
                        k: v
                        for k, v in conf["registries"]["secondary"].items()
                        if k not in {r.registry for r in regs}
                    }
                    if not others:
                        break
                    reg = self._registration(rng, t, rng.weighted(others), slot, "secondary")
                    direction = rng.weighted(cross["direction"])
                    if direction in ("both", "primary_cites"):
                        regs[0].cites.append(reg.bare)
                    if direction in ("both", "secondary_cites"):
                        reg.cites.append(regs[0].bare)
                    regs.append(reg)
                if rng.chance(float(cross["utn_share"])):
                    p.utn = ids.utn(idx)
            if rng.chance(float(conf["near_duplicates"]["share"])):
                others = {
                    k: v
                    for k, v in conf["registries"]["secondary"].items()
                    if k not in {r.registry for r in regs}
                }
                if others:
                    regs.append(self._registration(rng, t, rng.weighted(others), 7, "near_duplicate"))
            self._plan_papers(rng, p)
            planned.append(p)
        self._plan_grants(planned)
        self._plan_reviews(planned)
        return planned

    def _plan_papers(self, rng: Rng, p: Planned) -> None:
        pub, t = self.conf["publications"], p.trial
        if t.status in ("COMPLETED", "TERMINATED") and rng.chance(float(pub["result_paper_share"])):
            n = 2 if rng.chance(float(pub["second_paper_share"])) else 1
            for _ in range(n):
                pmid = self._new_pmid()
                p.papers.append(pmid)
                self.articles.append(self._result_paper(rng, p, pmid))
        if rng.chance(float(pub["unrelated_papers_per_trial"])):
            self.articles.append(self._unrelated_paper(rng, p))

    def _result_paper(self, rng: Rng, p: Planned, pmid: str) -> pubmed.Article:
        t, text, reg = p.trial, p.text, p.regs[0]
        style = rng.weighted(self.conf["publications"]["link_style"])
        cond = text.condition_names[0]
        drug = t.drugs[0].name if t.drugs else "a complex intervention"
        year = min(int(self.conf["dates"]["last_year"]), t.completion.year + rng.randint(0, 2))
        reg_name = "EudraCT" if reg.registry == "EU CTR" else reg.registry
        design_word = (_PHASE_WORDS.get(t.phase) or "randomised") if t.phase else "observational"
        sections = [
            (
                "BACKGROUND",
                f"Treatment options for {cond.lower()} are limited. We assessed {drug.lower()} in this population.",
            ),
            (
                "METHODS",
                f"In this {design_word} trial sponsored by {t.sponsor}, "
                f"{t.enrollment} participants were enrolled."
                + (
                    f" This trial is registered with {reg_name}, number {reg.bare}."
                    if style != "databank"
                    else ""
                ),
            ),
            (
                "RESULTS",
                f"The primary outcome, {text.primary[0][0].lower()}, differed between groups "
                f"(p={rng.uniform(0.001, 0.2):.3f}).",
            ),
            (
                "CONCLUSIONS",
                f"{drug} {'improved' if rng.chance(0.5) else 'did not improve'} outcomes in {cond.lower()}.",
            ),
        ]
        databanks = []
        if style != "abstract_only":
            databanks = [(pubmed.databank_name(reg.registry), [reg.bare])]
        pubtypes = ["Journal Article"]
        if t.allocation == "RANDOMIZED":
            pubtypes.append("Randomized Controlled Trial")
        if t.phase == "PHASE3":
            pubtypes.append("Clinical Trial, Phase III")
        mesh = [(c.ui, c.name, True) for c in t.conditions] + [
            (d.mesh.ui, d.mesh.name, False) for d in t.drugs
        ]
        self.truth["papers"].append(
            {
                "pmid": pmid,
                "trial": t.key,
                "registry": reg.registry,
                "trial_id": reg.bare,
                "link_style": style,
            }
        )
        if reg.registry == CTGOV and rng.chance(float(self.conf["publications"]["ctgov_reference_share"])):
            p.references.append(
                {
                    "pmid": pmid,
                    "type": "RESULT",
                    "citation": f"Smith J, et al. {drug} in {cond}. {year}. PMID: {pmid}",
                }
            )
        return pubmed.Article(
            pmid,
            f"{drug} in {cond.lower()}: results of a {'randomised ' if 'Randomized Controlled Trial' in pubtypes else ''}trial.",
            year,
            sections,
            pubtypes,
            mesh + [(*pubmed.HUMANS, False)],
            databanks,
            journal=rng.randrange(9),
            authors=rng.sample(range(12), rng.randint(2, 6)),
        )

    def _unrelated_paper(self, rng: Rng, p: Planned, pmid: str | None = None) -> pubmed.Article:
        c = p.trial.conditions[0]
        pmid = pmid or self._new_pmid()
        self.truth["papers"].append(
            {"pmid": pmid, "trial": None, "registry": None, "trial_id": None, "link_style": "unrelated"}
        )
        return pubmed.Article(
            pmid,
            f"Current concepts in the management of {c.name.lower()}: a narrative review.",
            rng.randint(2000, 2025),
            [(None, f"This review summarises recent evidence on {c.name.lower()}.")],
            ["Journal Article", "Review"],
            [(c.ui, c.name, True), (*pubmed.HUMANS, False)],
            journal=rng.randrange(9),
        )

    def _plan_grants(self, planned: list[Planned]) -> None:
        g = self.conf["grants"]
        pool = [
            p
            for p in planned
            if p.regs[0].registry == CTGOV and not p.regs[0].defect and self.rng.chance(float(g["share"]))
        ]
        serial = self.k * 10_000
        while len(pool) >= int(g["group_size"][0]):
            size = min(len(pool), self.rng.span(g["group_size"]))
            group, pool = pool[:size], pool[size:]
            grant = ids.nih_grant(serial)
            serial += 1
            for p in group:
                p.grant = grant
            self.truth["grants"].append(
                {
                    "grant": grant,
                    "trials": [p.trial.key for p in group],
                    "ids": [p.regs[0].trial_id for p in group],
                }
            )

    def _conclusion(self, drugs: list[str], condition: str, k: int) -> str:
        """A review's conclusion in Cochrane's wording, specific to its drugs, condition and evidence.

        Every review must read differently: evidence_summary's distractors are other reviews' conclusions,
        and identical texts would leave it no options.
        """
        effect = self.rng.choice(["probably improves", "may improve", "may make little or no difference to",
                                  "probably reduces", "may increase"])
        outcome = self.rng.choice(["symptom scores", "all-cause mortality", "quality of life", "hospital admissions",
                                   "disease progression", "response rates", "serious adverse events"])
        certainty = self.rng.choice(["low", "moderate", "high", "very low"])
        tail = "further trials are needed" if certainty in ("low", "very low") else "further trials are unlikely to change this"
        return (f"In people with {condition.lower()}, {' and '.join(drugs)} {effect} {outcome} compared with placebo "
                f"or usual care ({k} trials; {certainty}-certainty evidence); {tail}.")

    def _plan_reviews(self, planned: list[Planned]) -> None:
        pub = self.conf["publications"]
        n = round(self.count * float(pub["reviews_per_1000_trials"]) / 1000)
        with_papers = [p for p in planned if p.papers]
        unrelated = [r["pmid"] for r in self.truth["papers"] if r["trial"] is None]
        if not with_papers:
            return
        for _ in range(max(n, 1 if self.count >= 200 else 0)):
            seed_trial = self.rng.choice(with_papers)
            cat = self.vocab.category[seed_trial.trial.conditions[0].name]
            same = [p for p in with_papers if self.vocab.category[p.trial.conditions[0].name] == cat]
            k = min(len(same), self.rng.span(pub["review_included"]))
            included = self.rng.sample(same, k)
            refs = [pm for p in included for pm in p.papers]
            others = self.rng.sample(
                unrelated, min(len(unrelated), self.rng.span(pub["review_unrelated_refs"]))
            )
            refs = sorted(set(refs + others), key=lambda x: (self.rng.random(), x))
            cond = seed_trial.trial.conditions[0]
            pmid = self._new_pmid()
            drugs = sorted({d.name for p in included for d in p.trial.drugs})[:3] or ["interventions"]
            sections = [
                (
                    "BACKGROUND",
                    f"{cond.name} is common and treatments such as {', '.join(drugs)} are widely used.",
                ),
                ("OBJECTIVES", f"To assess the effects of {', '.join(drugs)} for {cond.name.lower()}."),
                (
                    "SEARCH METHODS",
                    "We searched CENTRAL, MEDLINE, Embase and trial registers up to March 2024.",
                ),
                ("SELECTION CRITERIA", f"Randomised controlled trials in people with {cond.name.lower()}."),
                (
                    "DATA COLLECTION AND ANALYSIS",
                    "Two review authors independently extracted data and assessed risk of bias.",
                ),
                (
                    "MAIN RESULTS",
                    f"We included {k} trials with {sum(p.trial.enrollment for p in included)} participants.",
                ),
                ("AUTHORS' CONCLUSIONS", self._conclusion(drugs, cond.name, k)),
            ]
            mesh = (
                [(cond.ui, cond.name, True)]
                + [(self.vocab.descriptors[d].ui, d, False) for d in drugs if d in self.vocab.descriptors]
                + [(*pubmed.HUMANS, False)]
            )
            self.articles.append(
                pubmed.Article(
                    pmid,
                    f"{', '.join(drugs)} for {cond.name.lower()}.",
                    2024,
                    sections,
                    ["Journal Article", "Systematic Review", "Meta-Analysis"],
                    mesh,
                    references=refs,
                    journal=4,
                    authors=self.rng.sample(range(12), 4),
                )
            )
            self.truth["reviews"].append(
                {
                    "review_pmid": pmid,
                    "condition_ui": cond.ui,
                    "included_trials": [p.trial.key for p in included],
                    "included_trial_ids": [p.regs[0].trial_id for p in included],
                    "included_pmids": sorted(pm for p in included for pm in p.papers),
                    "unrelated_pmids": sorted(others),
                }
            )
            self.truth["papers"].append(
                {"pmid": pmid, "trial": None, "registry": None, "trial_id": None, "link_style": "review"}
            )

    # ---------------------------------------------------------------------------------------- writing
    def _ctgov_secondary(self, p: Planned, reg: Registration, rng: Rng) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        by_bare = {r.bare: r for r in p.regs}
        for cited in reg.cites:
            other = by_bare[cited]
            if other.registry == "EU CTR":
                out.append({"id": cited, "type": "EUDRACT_NUMBER"})
            else:
                kind = rng.weighted(self.conf["cross_registration"]["ctgov_registry_type"])
                out.append({"id": cited, "type": kind, "domain": other.registry})
        if p.utn and reg.role != "near_duplicate":
            out.append({"id": p.utn, "type": "OTHER", "domain": "WHO Universal Trial Number"})
        if p.grant and reg.role == "primary":
            out.append(
                {"id": p.grant, "type": "NIH", "link": f"https://reporter.nih.gov/quickSearch/{p.grant}"}
            )
        return out

    def _write_ctgov(self, zf: zipfile.ZipFile, p: Planned, reg: Registration) -> None:
        rng = Rng(derive_seed(self.seed, "ctgov", p.trial.idx, reg.role))
        rec = ctgov.study_record(
            rng,
            p.trial,
            p.text,
            self.vocab,
            self.conf,
            reg.trial_id,
            self._ctgov_secondary(p, reg, rng),
            p.references if reg.role == "primary" else [],
        )
        defect = reg.defect
        ident = rec["protocolSection"]["identificationModule"]
        if defect == "malformed NCT id":
            ident["nctId"] = "NCT" + reg.trial_id[-6:]
        elif defect == "missing NCT id":
            del ident["nctId"]
        elif defect == "wrong field type":
            rec["protocolSection"]["designModule"]["enrollmentInfo"]["count"] = "many"
        text = json.dumps(rec, ensure_ascii=False)
        if defect == "truncated JSON":
            text = text[: len(text) // 2]
        data = text.encode("utf-8")
        member = f"{reg.trial_id[-2:]}/{reg.trial_id}.json"
        info = zipfile.ZipInfo(member, date_time=ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        zf.writestr(info, data, compresslevel=6)
        self.ctgov_sizes.append(len(data))
        reg.files.append(f"{self.zip_name}!/{member}")
        reg.record_ids.append(reg.trial_id)
        if defect:
            self.truth["malformed"].append(
                {
                    "kind": "ctgov",
                    "defect": defect,
                    "id": reg.trial_id,
                    "trial": p.trial.key,
                    "file": self.zip_name,
                    "member": member,
                }
            )

    def _ictrp_records(self, p: Planned, reg: Registration) -> list[dict[str, str | None]]:
        rng = Rng(derive_seed(self.seed, "ictrp", p.trial.idx, reg.role))
        t = p.trial
        cites = list(reg.cites) + ([p.utn] if p.utn and reg.role != "near_duplicate" else [])
        bridge = None
        nct = next((c for c in reg.cites if c.startswith("NCT")), None)
        if reg.registry == "EU CTR" and nct:
            bridge = {"Bridging_flag": nct, "Bridged_type": "child"}
        if reg.role == "near_duplicate":
            size = max(
                1,
                round(
                    t.enrollment
                    * (1 + rng.uniform(-1, 1) * float(self.conf["near_duplicates"]["size_jitter"]))
                ),
            )
            t = Trial(**{**t.__dict__, "enrollment": size})
        pool = self.conf["countries"].get(reg.registry) or t.countries
        countries = t.countries if reg.registry == "EU CTR" else [pool[t.idx % len(pool)]]
        out = []
        for member in reg.members or [None]:
            trial_id = reg.trial_id + (f"-{member}" if member else "")
            rec = ictrp.export_record(
                rng, t, p.text, self.conf, reg.registry, trial_id, reg.bare, cites, bridge, countries
            )
            out.append(rec)
        return out

    def _write_ictrp(self, csv_fh, xml_fh, p: Planned, reg: Registration) -> None:
        for rec in self._ictrp_records(p, reg):
            defect, trial_id = reg.defect, rec["TrialID"]
            if defect == "unknown registry id":
                rec["TrialID"] = f"XYZR-{p.trial.registered.year}-{p.trial.idx:06d}"
            elif defect == "impossible date":
                rec["Date_registration"] = f"31/02/{p.trial.registered.year}"
            elif defect == "missing TrialID":
                rec["TrialID"] = None
            name = self.xml_name if reg.portal else self.csv_name
            if reg.portal:
                self.xml_count += 1
                xml_fh.write(
                    ictrp.portal_trial(rec, reg.registry, self.xml_count, p.text.acronym, "03/11/2025")
                )
            else:
                line = ictrp.csv_line(rec)
                if defect == "wrong column count":
                    line = ictrp.csv_line(rec, ictrp.EXPORT_COLUMNS[:-1])
                csv_fh.write(line)
            reg.files.append(name)
            reg.record_ids.append(trial_id)
            if defect:
                self.truth["malformed"].append(
                    {
                        "kind": "ictrp",
                        "defect": defect,
                        "id": trial_id,
                        "trial": p.trial.key,
                        "file": name,
                        "marker": rec["url"],
                    }
                )

    def _truth_for(self, p: Planned) -> None:
        t = p.trial
        if p.regs[0].defect:
            return
        members = []
        for reg in p.regs:
            members.append(
                {
                    "registry": reg.registry,
                    "id": reg.trial_id,
                    "bare": reg.bare,
                    "role": reg.role,
                    "link": "near_duplicate" if reg.role == "near_duplicate" else "id",
                    "records": reg.record_ids,
                    "file": reg.files[0] if reg.files else None,
                    "cites": reg.cites + ([p.utn] if p.utn and reg.role != "near_duplicate" else []),
                }
            )
            self.truth["records"].append(
                {
                    "trial": t.key,
                    "registry": reg.registry,
                    "id": reg.trial_id,
                    "role": reg.role,
                    "conditions": [
                        {"written": w, "mesh_ui": c.ui, "name": c.name}
                        for w, c in zip(p.text.condition_names, t.conditions, strict=True)
                    ],
                    "drugs": [
                        {"written": w, "drugbank_id": d.drugbank_id, "mesh_ui": d.mesh.ui, "name": d.name}
                        for w, d in zip(p.text.drug_names, t.drugs, strict=True)
                    ],
                    "phase": t.phase,
                    "status": t.status,
                    "why_stopped_class": t.why_class,
                    "study_type": t.study_type,
                    "enrollment": t.enrollment,
                    "registered": t.registered.isoformat(),
                }
            )
        self.truth["clusters"].append({"trial": t.key, "utn": p.utn, "grant": p.grant, "members": members})

    def _malformed_articles(self) -> None:
        rng = Rng(derive_seed(self.seed, "pubmed-malformed", self.k))
        n = n_planted(len(self.articles), self.conf, len(PUBMED_DEFECTS))
        for defect in PUBMED_DEFECTS:
            for _ in range(n):
                marker = f"Synthetic malformed citation {self.k}-{len(self.truth['malformed'])}"
                pmid = None if defect == "missing PMID" else f"PMID{rng.randint(1000, 9999)}x"
                pos = rng.randrange(len(self.articles) + 1)
                self.articles.insert(
                    pos, pubmed.Article(pmid, marker, 2020, [(None, "Text.")], ["Journal Article"])
                )
                self.truth["malformed"].append(
                    {
                        "kind": "pubmed",
                        "defect": defect,
                        "id": pmid,
                        "file": self.pubmed_name,
                        "marker": marker,
                    }
                )

    def write(self) -> dict[str, Any]:
        planned = self.plan()
        for sub in ("ctgov", "ictrp", "pubmed", "truth/parts"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        self.xml_count = 0
        with (
            zipfile.ZipFile(self.out / self.zip_name, "w") as zf,
            open(self.out / self.csv_name, "w", encoding="utf-8", newline="") as csv_fh,
            open(self.out / self.xml_name, "w", encoding="utf-8") as xml_fh,
        ):
            xml_fh.write(ictrp.PORTAL_HEAD)
            for p in planned:
                for reg in p.regs:
                    if reg.registry == CTGOV:
                        self._write_ctgov(zf, p, reg)
                    else:
                        self._write_ictrp(csv_fh, xml_fh, p, reg)
                self._truth_for(p)
            xml_fh.write(ictrp.PORTAL_TAIL)
        self._malformed_articles()
        with (
            open(self.out / self.pubmed_name, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
        ):
            gz.write(pubmed.HEAD.encode())
            for a in self.articles:
                gz.write(pubmed.article_xml(a).encode("utf-8"))
            gz.write(pubmed.TAIL.encode())
        for name, rows in self.truth.items():
            with open(
                self.out / "truth" / "parts" / f"{name}-{self.k:05d}.jsonl", "w", encoding="utf-8"
            ) as fh:
                for r in rows:
                    fh.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
        counts = {
            "trials": self.count,
            "ctgov_records": len(self.ctgov_sizes),
            "ictrp_csv_records": sum(
                1
                for p in planned
                for r in p.regs
                if r.registry != CTGOV and not r.portal
                for _ in r.record_ids
            ),
            "ictrp_xml_records": self.xml_count,
            "pubmed_articles": len(self.articles),
            "malformed": len(self.truth["malformed"]),
        }
        return {"shard": self.k, "counts": counts, "ctgov_sizes": self.ctgov_sizes}


def write_shard(args: tuple[dict[str, Any], int, int, int, int, int, str]) -> dict[str, Any]:
    """Worker entry point (picklable arguments)."""
    conf, seed, k, start, count, n_shards, out = args
    return ShardWriter(conf, seed, k, start, count, n_shards, Path(out)).write()
