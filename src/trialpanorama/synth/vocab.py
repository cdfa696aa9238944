"""The world's vocabulary: real MeSH tree names for conditions, real drug-dictionary drugs, synthetic MeSH UIs.

Names come from the 2019 MeSH tree (``tree_number<TAB>name``) and from drug-named-entity-recognition's
dictionary (read with the project's restricted unpickler), so the linker meets real terms. The tree has no
UIs, so every tree name gets a synthetic ``D`` + 6-digit UI (numbered over the sorted names): the MeSH XML,
the ClinicalTrials.gov browse meshes and the PubMed headings of one world all use the same numbering.

Written names vary the way registries vary them (case, uninverted word order, plurals, qualifiers, brand
names, dosage words); the true code of every written name is kept for the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from trialpanorama.synth.settings import Rng, derive_seed


@dataclass(frozen=True)
class Descriptor:
    ui: str
    name: str
    tree_numbers: tuple[str, ...]


@dataclass(frozen=True)
class Drug:
    drugbank_id: str
    name: str
    brands: tuple[str, ...]
    synonyms: tuple[str, ...]
    mesh: Descriptor


@dataclass
class Vocabulary:
    descriptors: dict[str, Descriptor]  # by name
    by_tree: dict[str, Descriptor]  # by tree number
    conditions: list[Descriptor]
    drugs: list[Drug]
    category: dict[str, str] = field(
        default_factory=dict
    )  # condition name -> top tree branch (C04, F03, ...)

    def ancestors(self, d: Descriptor) -> list[Descriptor]:
        """Every descriptor above ``d`` in any of its trees, nearest first, without repeats."""
        out: dict[str, Descriptor] = {}
        for tn in d.tree_numbers:
            parts = tn.split(".")
            for i in range(len(parts) - 1, 0, -1):
                parent = self.by_tree.get(".".join(parts[:i]))
                if parent and parent.ui != d.ui:
                    out.setdefault(parent.ui, parent)
        return list(out.values())


def padded_ui(ui: str) -> str:
    """The API v2 spelling of a MeSH UI: the letter and the digits zero-padded to 10 characters."""
    return ui[0] + ui[1:].rjust(9, "0")


def _read_tree(path: str) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            tn, _, name = line.rstrip("\n").partition("\t")
            if tn and name:
                names.setdefault(name, []).append(tn)
    return names


def _drug_entries(min_len: int = 4) -> list[tuple[str, str, list[str], list[str], list[str]]]:
    """(canonical, name, drugbank id, brands, synonyms, mesh tree) of single-ingredient dictionary drugs."""
    from trialpanorama.sources.drugs import dictionary_path, load_dictionary

    path = dictionary_path()
    if path is None:
        raise FileNotFoundError(
            "drug-named-entity-recognition is not installed (its dictionary names the drugs)"
        )
    obj = load_dictionary(path)
    data: dict[str, dict[str, Any]] = obj["drug_canonical_to_data"]
    vdata: dict[str, dict[str, Any]] = obj.get("drug_variant_to_variant_data") or {}
    variants: dict[str, list[str]] = {}
    for variant, canon in obj["drug_variant_to_canonical"].items():
        for c in canon if isinstance(canon, list | tuple | set) else [canon]:
            variants.setdefault(str(c), []).append(str(variant))
    out = []
    for canonical in sorted(data):
        d = data[canonical]
        name = str(d.get("name") or canonical)
        if not d.get("drugbank_id") or not d.get("mesh_tree") or len(name) < min_len:
            continue
        if "," in name or " and " in name.lower() or "/" in name:
            continue
        names = sorted(set(variants.get(canonical, [])))
        brands = [v for v in names if (vdata.get(v) or {}).get("is_brand")]
        syns = [v for v in names if v not in brands and v.lower() != name.lower()]
        out.append((name, str(d["drugbank_id"]), brands, syns, sorted(str(t) for t in d["mesh_tree"])))
    return out


@lru_cache(maxsize=4)
def _build(
    tree_tsv: str, seed: int, n_conditions: int, n_drugs: int, ui_base: int, branches: tuple[str, ...]
) -> Vocabulary:
    names = _read_tree(tree_tsv)
    descriptors: dict[str, Descriptor] = {}
    by_tree: dict[str, Descriptor] = {}
    for k, name in enumerate(sorted(names)):
        d = Descriptor(f"D{ui_base + k:06d}", name, tuple(sorted(names[name])))
        descriptors[name] = d
        for tn in d.tree_numbers:
            by_tree[tn] = d
    rng = Rng(derive_seed(seed, "vocabulary"))
    # Conditions: descriptors two or more levels down a disease branch (not "Neoplasms" itself).
    pool = sorted(
        n
        for n, d in descriptors.items()
        if any(tn.startswith(branches) and tn.count(".") >= 1 for tn in d.tree_numbers) and len(n) <= 60
    )
    conditions = [descriptors[n] for n in sorted(rng.sample(pool, min(n_conditions, len(pool))))]
    category = {d.name: next(tn for tn in d.tree_numbers if tn.startswith(branches))[:3] for d in conditions}
    drugs: list[Drug] = []
    for name, db, brands, syns, trees in _drug_entries():
        mesh = next((by_tree[t] for t in trees if t in by_tree), None)
        if mesh is None:
            continue
        drugs.append(Drug(db, name, tuple(brands), tuple(syns), mesh))
    seen: set[str] = set()
    unique: list[Drug] = []
    for d in drugs:
        if d.drugbank_id not in seen and d.mesh.ui not in seen:
            seen.update((d.drugbank_id, d.mesh.ui))
            unique.append(d)
    # Marketed drugs (those with a brand name) look like the interventions of real trials; fall back to all.
    branded = [d for d in unique if d.brands]
    unique = branded if len(branded) >= n_drugs else unique
    chosen = sorted(rng.sample(range(len(unique)), min(n_drugs, len(unique))))
    return Vocabulary(descriptors, by_tree, conditions, [unique[i] for i in chosen], category)


def build_vocabulary(conf: dict[str, Any], seed: int) -> Vocabulary:
    """The world's vocabulary (cached per process: every shard of a worker shares it)."""
    v = conf["vocabulary"]
    return _build(
        v["mesh_tree_tsv"],
        seed,
        int(v["conditions"]),
        int(v["drugs"]),
        int(v["mesh_ui_base"]),
        tuple(v["condition_branches"]),
    )


# ------------------------------------------------------------------------------------ spelling variants
def _uninvert(name: str) -> str:
    """MeSH's inverted form back to word order: "Diabetes Mellitus, Type 2" -> "Type 2 Diabetes Mellitus"."""
    if ", " not in name:
        return name
    head, _, tail = name.partition(", ")
    return f"{tail} {head}" if tail and "," not in tail else name


def _plural(name: str) -> str:
    if name.endswith(("s", "x", "sis", "a")) or " " in name and name.split()[-1][0].isdigit():
        return name
    return name + ("es" if name.endswith(("ch", "sh")) else "s")


def condition_spelling(rng: Rng, d: Descriptor, conf: dict[str, Any]) -> str:
    """One registry's spelling of a condition descriptor."""
    v = conf["vocabulary"]
    kind = rng.weighted(v["condition_spelling"])
    name = d.name
    if kind == "lower":
        return name.lower()
    if kind == "upper":
        return name.upper()
    if kind == "uninverted":
        return _uninvert(name)
    if kind == "plural":
        return _plural(_uninvert(name))
    if kind == "with_qualifier":
        q = rng.choice(v["condition_qualifiers"])
        return f"{q} {_uninvert(name)}".strip()
    return name


def drug_spelling(rng: Rng, drug: Drug, conf: dict[str, Any], mg: int = 100) -> str:
    """One registry's spelling of a drug: generic name, case variants, a brand name, or with dosage words
    (``mg``: the trial's own dose, so the name agrees with the arm that gives it)."""
    v = conf["vocabulary"]
    kind = rng.weighted(v["drug_spelling"])
    if kind == "lower":
        return drug.name.lower()
    if kind == "upper":
        return drug.name.upper()
    if kind == "brand" and drug.brands:
        return drug.brands[rng.randrange(len(drug.brands))].title()
    if kind == "dosage":
        return rng.choice(v["dosage_words"]).format(d=drug.name, mg=mg)
    return drug.name
