"""One patient's resources → :class:`ClinicalFacts`."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ._json import arr, codings, obj, text
from .codesets import CodeSets, system_key
from .dates import parse_day
from .facts import (
    FROM_INVALID_ENTRY,
    AllergyFact,
    AllergyStatus,
    ClinicalFacts,
    ClinicalStatus,
    ConditionFact,
    DataDomain,
    DataGap,
    FreeTextProblem,
    GapReason,
    Gender,
    PatientFact,
    ResourceType,
    SkippedEntry,
)
from .ketamine_doses import ketamine_doses
from .loading import InputError, ResourcePool
from .medications import DEFAULT_MERGE_GAP_DAYS, map_medications
from .observations import one_reading_a_day, read_observations
from .scores import questionnaire_scores
from .values import count_unreadable, readable_code, status_code

_IGNORED_VERIFICATION = {"refuted", "entered-in-error"}


def patients_in(pool: ResourcePool) -> list[str]:
    """The ids of the patients the input is about: its Patient resources, else the subjects referenced."""
    ids = [r["id"] for r in pool.of_type(ResourceType.PATIENT)]
    if ids:
        return ids
    subjects = {patient_key(r) for r in pool.resources if r["resourceType"] != ResourceType.MEDICATION}
    return sorted(s for s in subjects if s)


def patient_key(resource: dict[str, Any]) -> str | None:
    """The id of the patient a resource is about: its ``subject`` (else ``patient``) reference, relative
    (``Patient/1``), absolute (``https://…/Patient/1``) or ``urn:uuid:…``. The one rule every reader keys by: the
    mapping, ``screen``'s partitioning (``population``, whose SQL twin is tested against it)."""
    ref = text(obj(resource, "subject") or obj(resource, "patient"), "reference")
    if not ref:
        return None
    tail = ref.rstrip("/").split("/")
    if len(tail) >= 2 and tail[-2] == "Patient":
        return tail[-1]
    return ref.rsplit(":", 1)[-1]  # urn:uuid:…


def to_facts(
    pool: ResourcePool,
    patient_id: str | None = None,
    codesets: CodeSets | None = None,
    merge_gap_days: int = DEFAULT_MERGE_GAP_DAYS,
    observations_since: dt.date | None = None,
    blood_pressure_since: dt.date | None = None,
) -> ClinicalFacts:
    """Normalise one patient's resources. With several patients in the pool, ``patient_id`` is required.

    ``observations_since`` leaves out (unvalidated) Observations older than the earliest day any rule reads;
    conditions are never cut by date, since "any history" counts for several contraindications.
    """
    codesets = codesets or CodeSets.load()
    candidates = patients_in(pool)
    if patient_id is None:
        if len(candidates) > 1:
            raise InputError(f"the input holds {len(candidates)} patients; choose one with --patient")
        patient_id = candidates[0] if candidates else None
    elif candidates and patient_id not in candidates:
        raise InputError(f"patient {patient_id!r} is not in the input")

    def mine(rtype: ResourceType) -> list[dict[str, Any]]:
        return [r for r in pool.of_type(rtype) if patient_id is None or patient_key(r) == patient_id]

    patient = next((r for r in pool.of_type(ResourceType.PATIENT) if r["id"] == patient_id), None)
    observation_issues: list[SkippedEntry] = []
    # Entries that failed validation with not even a code to read: their type is incomplete (issue #20).
    unreadable: dict[ResourceType, int] = {}
    # Blood-pressure entries that failed validation with no reading left in them: blood pressure is incomplete.
    unreadable_bp: list[str] = []
    meds = map_medications(
        pool,
        codesets,
        mine(ResourceType.MEDICATION_STATEMENT) + mine(ResourceType.MEDICATION_REQUEST),
        merge_gap_days,
    )
    doses, dose_gaps = ketamine_doses(pool, codesets, mine(ResourceType.MEDICATION_ADMINISTRATION),
                                      mine(ResourceType.MEDICATION_DISPENSE))
    scores, pressures, labs = read_observations(codesets, pool, mine(ResourceType.OBSERVATION), observation_issues,
                                                observations_since, blood_pressure_since, unreadable, unreadable_bp)
    scores += questionnaire_scores(codesets, pool, mine(ResourceType.QUESTIONNAIRE_RESPONSE), observations_since,
                                   observation_issues)
    free_text: list[FreeTextProblem] = []
    conditions = tuple(_conditions(codesets, pool, mine(ResourceType.CONDITION), free_text, unreadable))
    for rtype, n in meds.unreadable:
        unreadable[rtype] = unreadable.get(rtype, 0) + n
    allergies = tuple(_allergies(codesets, pool, mine(ResourceType.ALLERGY_INTOLERANCE)))
    patient_fact = _patient(patient) if patient and pool.valid(patient) else None
    return ClinicalFacts(
        patient=patient_fact,
        conditions=conditions,
        courses=meds.courses,
        other_medications=meds.other,
        scores=tuple(sorted(scores, key=lambda s: s.day)),
        blood_pressures=tuple(one_reading_a_day(pressures)),
        lab_results=tuple(sorted(labs, key=lambda r: r.day)),
        allergies=allergies,
        gaps=(*pool.gaps, *meds.unresolved, *dose_gaps, *_unreadable_gaps(unreadable),
              *_unreadable_bp_gaps(unreadable_bp)),
        # Everything validated above has been reported by now: load problems, invalid entries, odd values.
        skipped=(*pool.skipped, *observation_issues),
        unmatched_medications=meds.unmatched,
        patient_id=patient_id,
        free_text_problems=tuple(free_text),
        ketamine=tuple(sorted((*meds.ketamine, *doses), key=lambda k: (k.start, k.reference))),
        nonadherence=meds.nonadherence,
    )


def _unreadable_gaps(counts: dict[ResourceType, int]) -> list[DataGap]:
    """'1 Condition entry could not be read': every rule reading that type says unknown, never absent."""
    from .searches import domains_of

    return [DataGap(rtype, GapReason.UNREADABLE,
                    f"{n} {rtype.value} entr{'y' if n == 1 else 'ies'} could not be read (failed validation, no "
                    "readable code)", domains_of(rtype))
            for rtype, n in counts.items()]


def _unreadable_bp_gaps(references: list[str]) -> list[DataGap]:
    """'1 blood pressure entry could not be read': blood pressure is unknown, never 'no reading' (issue #20)."""
    if not references:
        return []
    n = len(references)
    return [DataGap(ResourceType.OBSERVATION, GapReason.UNREADABLE,
                    f"{n} blood pressure entr{'y' if n == 1 else 'ies'} could not be read (failed validation, no "
                    f"readable value or date: {', '.join(references[:3])}{' …' if n > 3 else ''})",
                    frozenset({DataDomain.BLOOD_PRESSURE}))]


def _patient(res: dict[str, Any]) -> PatientFact:
    try:
        gender = Gender(res.get("gender") or "unknown")
    except ValueError:
        gender = Gender.UNKNOWN
    name = ""
    for n in res.get("name") or []:
        name = n.get("text") or " ".join([*n.get("given", []), n.get("family", "")]).strip()
        if name:
            break
    return PatientFact(id=res["id"], gender=gender, birth_date=parse_day(res.get("birthDate")), name=name)


# Words in a problem's text that name a contraindication (issue #12): a Condition with no recognised coding whose
# text says one of these makes that contraindication "unknown — confirm", never "absent".
_FREE_TEXT: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.I), c) for p, c in (
    (r"\bbipolar|\bmanic\b|\bmania\b|\bhypomani", "bipolar"),
    (r"schizo|psychos[ie]s|psychotic", "psychosis"),
    (r"aneurysm|arteriovenous malformation|\bavm\b", "aneurysm_or_avm"),
    (r"subarachnoid", "subarachnoid_hemorrhage"),
    (r"(intracerebral|intracranial|cerebral|intraparenchymal) (hemorrhage|haemorrhage|bleed)|hemorrhagic stroke|"
     r"haemorrhagic stroke", "intracerebral_hemorrhage"),
    (r"pregnan", "pregnancy"),
    (r"substance use|(alcohol|opioid|cocaine|cannabis|stimulant|amphetamine|ketamine|drug) (use disorder|"
     r"dependence|abuse|addiction)|alcoholism|addiction", "substance_use"),
    (r"heart failure|\bchf\b|cardiac failure", "heart_failure"),
    (r"myocardial infarction|heart attack|\bstemi\b|\bnstemi\b|acute coronary", "myocardial_infarction"),
    (r"unstable angina", "unstable_angina"),
))


def _free_text_concepts(label: str) -> list[str]:
    return [concept for pattern, concept in _FREE_TEXT if pattern.search(label)]


def _conditions(
    codesets: CodeSets, pool: ResourcePool, resources: Iterable[dict[str, Any]],
    free_text: list[FreeTextProblem] | None = None, unreadable: dict[ResourceType, int] | None = None,
) -> Iterable[ConditionFact]:
    for res in resources:
        code = obj(res, "code")
        if not readable_code(code):
            count_unreadable(pool, res, unreadable)
            continue
        concepts, first = _coded_concepts(codesets, code)
        if first is None:
            if free_text is not None:
                free_text.extend(_free_text_problems(pool, res, code))
            continue
        verification = status_code(res.get("verificationStatus"))
        if verification not in _IGNORED_VERIFICATION:
            yield _condition(pool, res, concepts, first, verification)


def _coded_concepts(codesets: CodeSets, code: dict[str, Any]) -> tuple[frozenset[str], Mapping[str, Any] | None]:
    """The concepts a Condition's codings name, and the first coding that names one (None: no coding does)."""
    concepts: set[str] = set()
    first: Mapping[str, Any] | None = None
    for coding in codings(code):
        found = codesets.condition_concepts(text(coding, "system"), text(coding, "code"))
        if found:
            concepts |= found
            first = first or coding
    return frozenset(concepts), first


def _free_text_problems(pool: ResourcePool, res: dict[str, Any], code: dict[str, Any]) -> list[FreeTextProblem]:
    """The contraindications an active, valid Condition with no coding we know names in its words (issue #12)."""
    label = " ".join([text(code, "text"), *(text(c, "display") for c in codings(code))]).strip()
    named = _free_text_concepts(label)
    if not named or not pool.valid(res) or status_code(obj(res, "verificationStatus")) in _IGNORED_VERIFICATION \
            or not _clinical_status(res).is_active:
        return []
    day = parse_day(res.get("onsetDateTime")) or parse_day(res.get("recordedDate"))
    return [FreeTextProblem(res["id"], label[:120], c, day) for c in named]


def _condition(pool: ResourcePool, res: dict[str, Any], concepts: frozenset[str], first: Mapping[str, Any],
               verification: str) -> ConditionFact:
    code = obj(res, "code")
    return ConditionFact(
        id=res["id"],
        concepts=concepts,
        code=str(first.get("code")),
        system=str(system_key(first.get("system")) or first.get("system")),
        display=str(first.get("display") or code.get("text") or first.get("code")),
        clinical_status=_clinical_status(res),
        verification_status=verification or "unspecified",
        # obj(): an invalid entry read leniently may hold anything where a period belongs.
        onset=parse_day(res.get("onsetDateTime")) or parse_day(obj(res, "onsetPeriod").get("start")),
        abatement=parse_day(res.get("abatementDateTime")) or parse_day(obj(res, "abatementPeriod").get("end")),
        recorded=parse_day(res.get("recordedDate")),
        # An entry that fails validation still says what it says where its code and status can be read (issue #20):
        # the finding stands, marked for a second look, rather than vanish into "absent".
        note="" if pool.valid(res) else FROM_INVALID_ENTRY,
    )


def _clinical_status(res: dict[str, Any]) -> ClinicalStatus:
    try:
        return ClinicalStatus(status_code(obj(res, "clinicalStatus")) or "unspecified")
    except ValueError:
        return ClinicalStatus.UNSPECIFIED


def _allergies(
    codesets: CodeSets, pool: ResourcePool, resources: Iterable[dict[str, Any]]
) -> Iterable[AllergyFact]:
    for res in resources:
        concepts = [obj(res, "code")] + [obj(r, "substance") for r in arr(res, "reaction")]
        for concept in concepts:
            codes = [text(c, "code") for c in codings(concept) if system_key(text(c, "system")) == "RXNORM"]
            names = [text(concept, "text")] + [text(c, "display") for c in codings(concept)]
            if any(c in codesets.ketamine_rxcuis for c in codes) or any(codesets.names_ketamine(n) for n in names):
                if not pool.valid(res):
                    break
                verification = status_code(res.get("verificationStatus"))
                if verification in _IGNORED_VERIFICATION:
                    break
                substance = next((n for n in names if n), "ketamine")
                yield AllergyFact(
                    id=res["id"],
                    substance=substance,
                    clinical_status=AllergyStatus.of(status_code(res.get("clinicalStatus"))),
                    verification_status=verification or "unspecified",
                )
                break
