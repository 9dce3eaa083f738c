"""Code sets: the data files in ``data/`` loaded into fast look-ups.

The files carry their sources (value-set OIDs, expansion dates, clinical.md citations); this module only indexes
them. Sites may add local codes through an additions file of the same shape as ``condition_concepts.toml``.
"""

from __future__ import annotations

import csv
import re
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ._json import codings, text
from .facts import DrugClass

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ATC = "http://www.whocc.no/atc"
NDC = "http://hl7.org/fhir/sid/ndc"

# EHRs name the same code systems in several ways; all of these mean the system on the left.
_SYSTEM_ALIASES = {
    SNOMED: "SNOMEDCT",
    "urn:oid:2.16.840.1.113883.6.96": "SNOMEDCT",
    ICD10CM: "ICD10CM",
    "urn:oid:2.16.840.1.113883.6.90": "ICD10CM",
    "http://hl7.org/fhir/sid/icd-10": "ICD10CM",
    LOINC: "LOINC",
    "urn:oid:2.16.840.1.113883.6.1": "LOINC",
    RXNORM: "RXNORM",
    "urn:oid:2.16.840.1.113883.6.88": "RXNORM",
    ATC: "ATC",
    "urn:oid:2.16.840.1.113883.6.73": "ATC",
    NDC: "NDC",
    "urn:oid:2.16.840.1.113883.6.69": "NDC",
}


_WHITESPACE = re.compile(r"\s+")


def system_key(system: str | None) -> str | None:
    """The short name of a code system URI (``SNOMEDCT``, ``ICD10CM`` …), or None when unknown.

    A URI with whitespace in it (``"http://snomed.info/ sct"``, a pasted line break) is invalid FHIR, but it still
    names its system once the whitespace is removed (issue #20: read what can be read)."""
    found = _SYSTEM_ALIASES.get(system or "")
    if found is None and system and _WHITESPACE.search(system):
        found = _SYSTEM_ALIASES.get(_WHITESPACE.sub("", system))
    return found


#: ATC groups of the CNS depressants the Spravato label's interactions name (US PI §7.1 [S1, S53]): anxiolytic
#: benzodiazepines, benzodiazepine hypnotics, benzodiazepine-related hypnotics (Z-drugs), opioids.
CNS_DEPRESSANT_ATC = {"N05BA": "benzodiazepine", "N05CD": "benzodiazepine", "N05CF": "z_drug", "N02A": "opioid"}


def icd10_key(code: str) -> str:
    return code.replace(".", "").strip().upper()


@dataclass(frozen=True, slots=True)
class Antidepressant:
    ingredient: str
    rxcui: str
    drug_class: DrugClass
    maoi: bool


@dataclass(frozen=True, slots=True)
class ClinicalDrug:
    """An RxNorm SCD from the VSAC lists: its name carries ingredient(s), strength and form."""

    rxcui: str
    display: str


@dataclass(frozen=True, slots=True)
class CnsDepressant:
    """A benzodiazepine, Z-drug or opioid (``data/cns_depressants.csv``)."""

    ingredient: str
    rxcui: str
    drug_class: str


@dataclass(frozen=True, slots=True)
class _Concept:
    name: str
    label: str
    source: str
    icd_prefixes: tuple[str, ...]
    icd_patterns: tuple[re.Pattern[str], ...]
    icd_exclude: tuple[re.Pattern[str], ...]


class CodeSets:
    """All code look-ups the mapping needs. Build with :meth:`load`; immutable afterwards."""

    def __init__(
        self,
        concepts: dict[str, _Concept],
        concept_codes: dict[tuple[str, str], frozenset[str]],
        antidepressants: dict[str, Antidepressant],
        clinical_drugs: dict[str, ClinicalDrug],
        observation_codes: dict[tuple[str, str], str],
        medication_names: dict[str, Any],
        brand_names: dict[str, str] | None = None,
        score_answers: dict[str, int] | None = None,
        cns_depressants: tuple[CnsDepressant, ...] = (),
        adherence: dict[str, Any] | None = None,
    ) -> None:
        self._concepts = concepts
        self._concept_codes = concept_codes
        self._icd_cache: dict[str, frozenset[str]] = {}
        self.antidepressants_by_name = antidepressants
        self.antidepressants_by_rxcui = {a.rxcui: a for a in antidepressants.values()}
        self.clinical_drugs = clinical_drugs
        self._observation_codes = observation_codes
        ketamine = medication_names["ketamine"]
        self.esketamine_rxcuis = frozenset(ketamine["esketamine_rxcui"])
        self.ketamine_rxcuis = frozenset(
            ketamine["esketamine_rxcui"] + ketamine["ketamine_rxcui_unverified"] + ketamine["ketamine_product_rxcui"]
        )
        self.spravato_ndc_products = tuple(ketamine["spravato_ndc_product"])
        self.ketamine_names = tuple(ketamine["names"])
        self.psychostimulant_names = tuple(medication_names["psychostimulant"]["names"])
        self._brands = {b.lower(): i for b, i in (brand_names or {}).items() if i in antidepressants}
        self.brands_by_ingredient: dict[str, tuple[str, ...]] = {}
        for brand, ingredient in self._brands.items():
            self.brands_by_ingredient[ingredient] = (*self.brands_by_ingredient.get(ingredient, ()), brand)
        names = sorted([*antidepressants, *self._brands], key=len, reverse=True)
        self._antidepressant_name_re = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b", re.I)
        self._ketamine_name_re = _word_re(self.ketamine_names)
        self._psychostimulant_name_re = _word_re(self.psychostimulant_names)
        #: LOINC answer code → item score (``data/score_answers.toml``).
        self.score_answers = dict(score_answers or {})
        self.cns_depressants = {d.ingredient: d for d in cns_depressants}
        self._cns_by_rxcui = {d.rxcui: d for d in cns_depressants if d.rxcui}
        self._cns_name_re = _word_re(tuple(self.cns_depressants)) if cns_depressants else None
        adherence = adherence or {}
        self.adherence_extension_url = str(adherence.get("us_core_extension", {}).get("url", ""))
        non = adherence.get("non_adherence", {})
        self.non_adherence_snomed = frozenset(non.get("snomed", []))
        self.non_adherence_statuses = frozenset(non.get("statement_status", []))
        self._non_adherence_words = tuple(w.lower() for w in non.get("words", []))

    # -- conditions -------------------------------------------------------------------------------------------

    def condition_concepts(self, system: str | None, code: str) -> frozenset[str]:
        key = system_key(system)
        if key is None or not code:
            return frozenset()
        if key == "ICD10CM":
            return self._icd_concepts(icd10_key(code))
        return self._concept_codes.get((key, code.strip()), frozenset())

    def _icd_concepts(self, code: str) -> frozenset[str]:
        cached = self._icd_cache.get(code)
        if cached is None:
            cached = self._icd_cache[code] = self._match_icd(code)
        return cached

    def _match_icd(self, code: str) -> frozenset[str]:
        found = set(self._concept_codes.get(("ICD10CM", code), frozenset()))
        for concept in self._concepts.values():
            if any(p.search(code) for p in concept.icd_exclude):
                found.discard(concept.name)
                continue
            if code.startswith(concept.icd_prefixes) or any(p.search(code) for p in concept.icd_patterns):
                found.add(concept.name)
        return frozenset(found)

    # -- observations -----------------------------------------------------------------------------------------

    def observation_group(self, system: str | None, code: str) -> str | None:
        """The group in observation_codes.toml of a LOINC (or SNOMED) code (``phq9_total``, ``systolic`` …)."""
        key = system_key(system)
        if key is None:
            return None
        return self._observation_codes.get((key, code.strip()))

    def observation_groups(self, concept: Any) -> set[str]:
        """The groups (data/observation_codes.toml) a CodeableConcept's codings belong to."""
        found = set()
        for c in codings(concept):
            group = self.observation_group(text(c, "system"), text(c, "code"))
            if group:
                found.add(group)
        return found

    def observation_codes(self, *groups: str) -> list[tuple[str, str]]:
        """(system URI, code) of every code in these groups, for a search by code."""
        uris = {"LOINC": LOINC, "SNOMEDCT": SNOMED}
        return [(uris[system], code) for (system, code), group in self._observation_codes.items()
                if group in groups]

    # -- medications ------------------------------------------------------------------------------------------

    def antidepressant_in_name(self, text: str) -> list[Antidepressant]:
        """Antidepressant ingredients named in a drug name, in order of appearance."""
        seen: dict[str, Antidepressant] = {}
        for m in self._antidepressant_name_re.finditer(text):
            name = m.group(1).lower()
            ingredient = self._brands.get(name, name)
            seen.setdefault(ingredient, self.antidepressants_by_name[ingredient])
        return list(seen.values())

    def is_brand(self, text: str, ingredient: str) -> bool:
        """True when ``text`` names ``ingredient`` only by a brand (brand_names.csv)."""
        return not re.search(rf"\b{re.escape(ingredient)}\b", text, re.I) and any(
            re.search(rf"\b{re.escape(b)}\b", text, re.I) for b in self.brands_by_ingredient.get(ingredient, ()))

    def names_ketamine(self, text: str) -> bool:
        return bool(self._ketamine_name_re.search(text))

    def psychostimulant_in_name(self, text: str) -> str | None:
        m = self._psychostimulant_name_re.search(text)
        return m.group(1).lower() if m else None

    def cns_depressant(self, concept: Any, names: list[str]) -> CnsDepressant | None:
        """The benzodiazepine, Z-drug or opioid a medication is, by RxNorm ingredient, ATC group, or name."""
        atc_class = None
        for coding in codings(concept):
            key, code = system_key(text(coding, "system")), text(coding, "code").strip().upper()
            if key == "RXNORM" and code in self._cns_by_rxcui:
                return self._cns_by_rxcui[code]
            if key == "ATC":
                atc_class = atc_class or next((c for p, c in CNS_DEPRESSANT_ATC.items() if code.startswith(p)), None)
        for name in names:
            m = self._cns_name_re.search(name) if self._cns_name_re else None
            if m:
                return self.cns_depressants[m.group(1).lower()]
        if atc_class is not None:
            # Coded by class only: the name is what the record calls it.
            return CnsDepressant(next((n for n in names if n), atc_class.replace("_", "-")), "", atc_class)
        return None

    def says_non_adherence(self, label: str) -> bool:
        low = label.lower()
        return any(w in low for w in self._non_adherence_words)

    @classmethod
    def load(cls, additions: Path | None = None) -> CodeSets:
        if additions is None:
            return _default_codesets()
        return _build(tomllib.loads(additions.read_text(encoding="utf-8")))


def _word_re(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b", re.I)


def _data_text(name: str) -> str:
    return resources.files("fhir_mapping").joinpath("data", name).read_text(encoding="utf-8")


@cache
def _default_codesets() -> CodeSets:
    return _build({})


def _csv_rows(name: str) -> list[dict[str, str]]:
    """A data file's rows; lines starting with ``#`` are its provenance notes."""
    return list(csv.DictReader(line for line in _data_text(name).splitlines() if not line.startswith("#")))


def _toml(name: str) -> dict[str, Any]:
    return tomllib.loads(_data_text(name))


def _concept_definitions(additions: dict[str, Any]) -> dict[str, Any]:
    """The condition concepts, with a site's additions: lists extended, other keys only where absent."""
    concept_defs = _toml("condition_concepts.toml")
    for name, extra in additions.items():
        merged = concept_defs.setdefault(name, {"label": name, "source": "local addition"})
        for key, value in extra.items():
            if isinstance(value, list):
                merged[key] = [*merged.get(key, []), *value]
            else:
                merged.setdefault(key, value)
    return concept_defs


def _value_set_rows() -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in csv.DictReader(_data_text("condition_and_observation_valuesets.csv").splitlines()):
        rows[row["value_set"]].append(row)
    return rows


def _value_set_codes(name: str, d: dict[str, Any], value_set_rows: dict[str, list[dict[str, str]]],
                     ) -> Iterator[tuple[str, str]]:
    """The (system, code) pairs a concept takes from its value sets: its systems only, SNOMED CT members filtered
    by display (include / exclude patterns), ICD-10-CM codes in their dotless key form."""
    excludes = [re.compile(p) for p in d.get("snomed_exclude", [])]
    includes = [re.compile(p) for p in d.get("snomed_include", [])]
    systems = set(d.get("from_systems", []))
    for vs in d.get("value_sets", []):
        if vs not in value_set_rows:
            raise ValueError(f"condition concept {name!r}: unknown value set {vs!r}")
        for row in value_set_rows[vs]:
            system = row["code_system"]
            if system not in systems:
                continue
            if system == "SNOMEDCT" and any(p.search(row["display"]) for p in excludes):
                continue
            if system == "SNOMEDCT" and includes and not any(p.search(row["display"]) for p in includes):
                continue
            yield system, icd10_key(row["code"]) if system == "ICD10CM" else row["code"]


def _concept(name: str, d: dict[str, Any]) -> _Concept:
    return _Concept(
        name=name,
        label=d.get("label", name),
        source=d.get("source", ""),
        icd_prefixes=tuple(d.get("icd10cm_prefixes", [])),
        icd_patterns=tuple(re.compile(p) for p in d.get("icd10cm_patterns", [])),
        icd_exclude=tuple(re.compile(p) for p in d.get("icd10cm_exclude", [])),
    )


def _concepts(concept_defs: dict[str, Any], value_set_rows: dict[str, list[dict[str, str]]],
              ) -> tuple[dict[str, _Concept], dict[tuple[str, str], frozenset[str]]]:
    codes: dict[tuple[str, str], set[str]] = defaultdict(set)
    concepts: dict[str, _Concept] = {}
    for name, d in concept_defs.items():
        for key in _value_set_codes(name, d, value_set_rows):
            codes[key].add(name)
        for extra in d.get("extra", []):
            for code in extra["codes"]:
                codes[(extra["system"], code)].add(name)
        concepts[name] = _concept(name, d)
    return concepts, {k: frozenset(v) for k, v in codes.items()}


def _observation_codes(value_set_rows: dict[str, list[dict[str, str]]]) -> dict[tuple[str, str], str]:
    """(system, code) → observation group: listed LOINC codes and extras first, then a group's value set."""
    observation_codes: dict[tuple[str, str], str] = {}
    for group, d in _toml("observation_codes.toml").items():
        for code in d.get("codes", []):
            observation_codes[("LOINC", code)] = group
        for extra in d.get("extra", []):
            for code in extra["codes"]:
                observation_codes[(extra["system"], code)] = group
        for row in value_set_rows[d["value_set"]] if d.get("value_set") else ():
            if row["code_system"] == "LOINC":
                observation_codes.setdefault(("LOINC", row["code"]), group)
    return observation_codes


def _build(additions: dict[str, Any]) -> CodeSets:
    value_set_rows = _value_set_rows()
    concepts, concept_codes = _concepts(_concept_definitions(additions), value_set_rows)
    return CodeSets(
        concepts=concepts,
        concept_codes=concept_codes,
        antidepressants={row["ingredient"]: Antidepressant(row["ingredient"], row["rxcui"], DrugClass(row["class"]),
                                                           row["maoi"] == "true")
                         for row in _csv_rows("antidepressants.csv")},
        clinical_drugs={row["rxnorm_scd"]: ClinicalDrug(row["rxnorm_scd"], row["display"])
                        for row in _csv_rows("antidepressant_scds_vsac.csv")},
        observation_codes=_observation_codes(value_set_rows),
        medication_names=_toml("medication_names.toml"),
        brand_names={row["brand"]: row["ingredient"] for row in _csv_rows("brand_names.csv")},
        score_answers={code: int(v) for table in _toml("score_answers.toml").values()
                       for code, v in table.get("answers", {}).items()},
        cns_depressants=tuple(CnsDepressant(row["ingredient"], row["rxcui"], row["class"])
                              for row in _csv_rows("cns_depressants.csv")),
        adherence=_toml("adherence_codes.toml"),
    )
