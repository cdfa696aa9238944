"""The world's vocabulary files: a MeSH descriptor XML (descYYYY.xml) and a DrugBank open-vocabulary CSV,
covering every term the world uses (conditions, their tree ancestors, drugs) in the real formats (formats.md §5).

Planted rejects: a descriptor record without its ConceptList and a DrugBank row with a malformed id, each
listed in the ground truth.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from trialpanorama.synth.settings import Rng, derive_seed
from trialpanorama.synth.vocab import Descriptor, Vocabulary, _plural, _uninvert

DRUGBANK_HEADER = (
    '"DrugBank ID","Accession Numbers","Common name","CAS","UNII","Synonyms","Standard InChI Key"\n'
)


def used_descriptors(vocab: Vocabulary) -> list[Descriptor]:
    """Conditions, their ancestors and the drugs' descriptors, sorted by UI."""
    out: dict[str, Descriptor] = {}
    for d in vocab.conditions:
        out[d.ui] = d
        for a in vocab.ancestors(d):
            out[a.ui] = a
    for drug in vocab.drugs:
        out[drug.mesh.ui] = drug.mesh
    return [out[k] for k in sorted(out)]


def _n_bad(n: int, conf: dict[str, Any]) -> int:
    m = conf["malformed"]
    return max(1 if n >= int(m["min_records"]) else 0, int(math.floor(n * float(m["rate"]))))


def descriptor_xml(d: Descriptor, concept_list: bool = True) -> str:
    terms = [d.name] + sorted({_uninvert(d.name), _plural(_uninvert(d.name))} - {d.name})
    trees = "".join(f"<TreeNumber>{tn}</TreeNumber>" for tn in d.tree_numbers)
    concepts = ""
    if concept_list:
        term_xml = "".join(
            f'<Term ConceptPreferredTermYN="{"Y" if i == 0 else "N"}" IsPermutedTermYN="N" LexicalTag="NON" '
            f'RecordPreferredTermYN="{"Y" if i == 0 else "N"}"><TermUI>T{int(d.ui[1:]) * 4 + i:07d}</TermUI>'
            f"<String>{escape(t)}</String></Term>"
            for i, t in enumerate(terms)
        )
        concepts = (
            f'<ConceptList><Concept PreferredConceptYN="Y"><ConceptUI>M{int(d.ui[1:]):07d}</ConceptUI>'
            f"<ConceptName><String>{escape(d.name)}</String></ConceptName><TermList>{term_xml}</TermList>"
            "</Concept></ConceptList>"
        )
    return (
        f'<DescriptorRecord DescriptorClass="1"><DescriptorUI>{d.ui}</DescriptorUI><DescriptorName><String>'
        f"{escape(d.name)}</String></DescriptorName><DateCreated><Year>1999</Year><Month>01</Month><Day>01</Day>"
        f"</DateCreated><TreeNumberList>{trees}</TreeNumberList>{concepts}</DescriptorRecord>\n"
    )


def write_mesh_xml(path: Path, vocab: Vocabulary, conf: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Write the descriptor XML; returns the planted malformed records for the ground truth."""
    used = used_descriptors(vocab)
    rng = Rng(derive_seed(seed, "mesh-malformed"))
    bad = set(rng.sample(range(len(used)), _n_bad(len(used), conf)))
    planted = []
    with path.open("w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0"?>\n<DescriptorRecordSet LanguageCode="eng">\n')
        for i, d in enumerate(used):
            fh.write(descriptor_xml(d, concept_list=i not in bad))
            if i in bad:
                planted.append(
                    {
                        "kind": "mesh_xml",
                        "defect": "no ConceptList",
                        "id": d.ui,
                        "file": path.name,
                        "marker": f"<DescriptorUI>{d.ui}</DescriptorUI>",
                    }
                )
        fh.write("</DescriptorRecordSet>\n")
    return planted


def _csv(values: list[str]) -> str:
    return ",".join('"' + v.replace('"', '""') + '"' for v in values) + "\n"


def write_drugbank_csv(
    path: Path, vocab: Vocabulary, conf: dict[str, Any], seed: int
) -> list[dict[str, Any]]:
    """Write the DrugBank vocabulary CSV for the world's drugs; returns the planted malformed rows."""
    drugs = sorted(vocab.drugs, key=lambda d: d.drugbank_id)
    rng = Rng(derive_seed(seed, "drugbank-malformed"))
    bad = set(rng.sample(range(len(drugs)), _n_bad(len(drugs), conf)))
    planted = []
    with path.open("w", encoding="utf-8") as fh:
        fh.write(DRUGBANK_HEADER)
        for i, d in enumerate(drugs):
            db = d.drugbank_id if i not in bad else "DBX" + d.drugbank_id[2:]
            syns = " | ".join(s.title() if s.islower() else s for s in d.synonyms[:12])
            fh.write(_csv([db, db, d.name, "", "", syns, ""]))
            if i in bad:
                planted.append(
                    {
                        "kind": "drugbank_csv",
                        "defect": "malformed DrugBank ID",
                        "id": d.drugbank_id,
                        "file": path.name,
                        "marker": f'"{db}"',
                    }
                )
    return planted
