"""One patient's resources → :class:`ClinicalFacts`."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ._json import arr, codings, obj, text
from .codesets import CodeSets, system_key
from .dates import effective_day, parse_day
from .facts import (
    COMPUTED_FROM_ITEMS,
    FROM_INVALID_ENTRY,
    AllergyFact,
    AllergyStatus,
    BloodPressureFact,
    ClinicalFacts,
    ClinicalStatus,
    ConditionFact,
    DataDomain,
    DataGap,
    FreeTextProblem,
    GapReason,
    Gender,
    LabResultFact,
    ObservationKind,
    PatientFact,
    ResourceType,
    ScoreFact,
    SkippedEntry,
)
from .ketamine_doses import ketamine_doses
from .loading import InputError, ResourcePool
from .medications import DEFAULT_MERGE_GAP_DAYS, map_medications

_FINAL_OBSERVATION = {"final", "amended", "corrected"}
#: FHIR R4 ObservationStatus: a status one of these is readable (whether or not it is final).
_OBSERVATION_STATUSES = {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                         "entered-in-error", "unknown"}
_IGNORED_VERIFICATION = {"refuted", "entered-in-error"}
_POSITIVE_INTERPRETATION = {"POS", "A", "AA", "H", "HH", "HU", "DET"}
_NEGATIVE_INTERPRETATION = {"NEG", "N", "ND", "L", "LL"}
# SNOMED CT qualifier values an EHR puts in valueCodeableConcept: Positive, Detected, Present (clinical.md §5 uses
# these words; the codes are the SNOMED qualifiers of the same name).
_POSITIVE_CODES = {"10828004", "260373001", "52101004"}
_PREGNANT = "77386006"
_POSITIVE_TEXT = re.compile(r"^\s*(positive|detected|reactive|present)\b", re.I)
_TRUE_TEXT = re.compile(r"^\s*(yes|true|current|positive|present)\b", re.I)
# An item score sent as text: "12", " 3 " (US Core's PHQ-9 total is "valueString": "12"); anything else is not read.
_INTEGER_TEXT = re.compile(r"^\s*\+?\d{1,3}\s*$")
_SCORE_RANGES = {
    ObservationKind.PHQ9_TOTAL: (0, 27),
    ObservationKind.PHQ9_ITEM9: (0, 3),
    ObservationKind.GAD7_TOTAL: (0, 21),
}
_DRUG_SCREENS = {
    "drug_screen_cocaine": "cocaine",
    "drug_screen_amphetamines": "amphetamines",
    "drug_screen_pcp": "phencyclidine",
    "drug_screen_ketamine": "ketamine",
}


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
    scores, pressures, labs = _observations(codesets, pool, mine(ResourceType.OBSERVATION), observation_issues,
                                            observations_since, blood_pressure_since, unreadable, unreadable_bp)
    scores += _questionnaire_scores(codesets, pool, mine(ResourceType.QUESTIONNAIRE_RESPONSE), observations_since,
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
        blood_pressures=tuple(_one_reading_a_day(pressures)),
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


def _count_unreadable_bp(where: str, references: list[str] | None) -> None:
    if references is not None:
        references.append(where)


def readable_code(concept: Any) -> bool:
    """A CodeableConcept with something to read: a coding with a code, or a text."""
    return bool(text(concept, "text").strip()) or any(text(c, "code").strip() for c in codings(concept))


def _count_unreadable(pool: ResourcePool, res: dict[str, Any], counts: dict[ResourceType, int] | None) -> None:
    # Only an entry that is not valid FHIR counts: a valid one without a code we know is simply not ours.
    if counts is not None and not pool.valid(res):
        rtype = ResourceType(res["resourceType"])
        counts[rtype] = counts.get(rtype, 0) + 1


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


def _status_code(concept: Any) -> str:
    for coding in codings(concept):
        if text(coding, "code"):
            return text(coding, "code")
    return ""


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
            _count_unreadable(pool, res, unreadable)
            continue
        concepts: set[str] = set()
        first: Mapping[str, Any] | None = None
        for coding in codings(code):
            found = codesets.condition_concepts(text(coding, "system"), text(coding, "code"))
            if found:
                concepts |= found
                first = first or coding
        if not concepts and free_text is not None:
            label = " ".join([text(code, "text"), *(text(c, "display") for c in codings(code))]).strip()
            named = _free_text_concepts(label)
            if named and pool.valid(res) and _status_code(obj(res, "verificationStatus")) not in \
                    _IGNORED_VERIFICATION and _clinical_status(res).is_active:
                day = parse_day(res.get("onsetDateTime")) or parse_day(res.get("recordedDate"))
                free_text.extend(FreeTextProblem(res["id"], label[:120], c, day) for c in named)
            continue
        if not concepts or first is None:
            continue
        # An entry that fails validation still says what it says where its code and status can be read (issue #20):
        # the finding stands, marked for a second look, rather than vanish into "absent".
        note = "" if pool.valid(res) else FROM_INVALID_ENTRY
        verification = _status_code(res.get("verificationStatus"))
        if verification in _IGNORED_VERIFICATION:
            continue
        clinical = _clinical_status(res)
        yield ConditionFact(
            id=res["id"],
            concepts=frozenset(concepts),
            code=str(first.get("code")),
            system=str(system_key(first.get("system")) or first.get("system")),
            display=str(first.get("display") or code.get("text") or first.get("code")),
            clinical_status=clinical,
            verification_status=verification or "unspecified",
            # obj(): an invalid entry read leniently may hold anything where a period belongs.
            onset=parse_day(res.get("onsetDateTime")) or parse_day(obj(res, "onsetPeriod").get("start")),
            abatement=parse_day(res.get("abatementDateTime")) or parse_day(obj(res, "abatementPeriod").get("end")),
            recorded=parse_day(res.get("recordedDate")),
            note=note,
        )


def _clinical_status(res: dict[str, Any]) -> ClinicalStatus:
    try:
        return ClinicalStatus(_status_code(obj(res, "clinicalStatus")) or "unspecified")
    except ValueError:
        return ClinicalStatus.UNSPECIFIED


def number_value(res: Any) -> float | None:
    """The number of an Observation or component (valueQuantity, valueInteger, valueDecimal), if finite and sane."""
    quantity = obj(res, "valueQuantity")
    value = quantity.get("value") if quantity else res.get("valueInteger") if isinstance(res, dict) else None
    if value is None and isinstance(res, dict):
        value = res.get("valueDecimal")
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value and abs(value) < 1e9:
        return float(value)
    return None


def _is_positive(res: dict[str, Any]) -> bool | None:
    """True / False for a qualitative or interpreted result; None when it cannot be read as either."""
    for interp in arr(res, "interpretation"):
        for coding in codings(interp):
            code = text(coding, "code").upper()
            if code in _POSITIVE_INTERPRETATION:
                return True
            if code in _NEGATIVE_INTERPRETATION:
                return False
    value = obj(res, "valueCodeableConcept")
    if any(text(c, "code") in _POSITIVE_CODES for c in codings(value)):
        return True
    texts = [text(value, "text"), *(text(c, "display") or text(c, "code") for c in codings(value)),
             text(res, "valueString")]
    if any(_POSITIVE_TEXT.match(t) for t in texts if t):
        return True
    if value or text(res, "valueString"):
        return False
    quantity = obj(res, "valueQuantity")
    if quantity:
        # A quantitative hCG with no interpretation: positive above its own reference range, else not readable.
        amount = number_value(res)
        highs = [number_value({"valueQuantity": obj(r, "high")}) for r in arr(res, "referenceRange")]
        high = next((h for h in highs if h is not None), None)
        if amount is not None and high is not None:
            return amount > high
    return None


def _observations(
    codesets: CodeSets,
    pool: ResourcePool,
    resources: Iterable[dict[str, Any]],
    skipped: list[SkippedEntry],
    since: dt.date | None = None,
    bp_since: dt.date | None = None,
    unreadable: dict[ResourceType, int] | None = None,
    unreadable_bp: list[str] | None = None,
) -> tuple[list[ScoreFact], list[BloodPressureFact], list[LabResultFact]]:
    scores: list[ScoreFact] = []
    pressures: list[BloodPressureFact] = []
    labs: list[LabResultFact] = []
    # Standalone systolic and diastolic Observations taken at the same instant are one reading.
    halves: dict[tuple[str, str], dict[str, Any]] = {}
    # PHQ-9 item Observations (US Core: one Observation per item, the panel's hasMember), for a total none recorded.
    items = _PanelItems()
    for res in resources:
        groups = codesets.observation_groups(res.get("code"))
        if not groups:
            if not readable_code(obj(res, "code")):
                _count_unreadable(pool, res, unreadable)
            continue
        day = effective_day(res)
        if since is not None and day is not None and day < since:
            continue
        if bp_since is not None and day is not None and day < bp_since and groups & _BP_GROUPS:
            continue  # blood pressures older than any rule or chart reads are not validated
        valid = pool.valid(res)
        where = f"Observation/{res['id']}"
        status = text(res, "status").strip().lower()
        # A blood pressure in an entry that fails validation is read as leniently as a score (issue #20): its code
        # and status readable, the values and day that can be read stand, marked so; with none readable (or no
        # status that says what it is) it is not 'no reading' but blood pressure unknown.
        lenient_bp = not valid and bool(groups & _BP_GROUPS)
        if lenient_bp and (status not in _OBSERVATION_STATUSES or day is None):
            _count_unreadable_bp(where, unreadable_bp)
            continue
        if status not in _FINAL_OBSERVATION:
            continue
        # A score or result in an entry that fails validation is still read where its code and status can be
        # (issue #20), marked so.
        note = "" if valid else FROM_INVALID_ENTRY
        if day is None:
            skipped.append(SkippedEntry(where, "Observation", "no effective date"))
            continue
        if "phq9_panel" in groups:
            items.panel(res)
            scores.extend(_panel_scores(codesets, res, day, skipped, note))
        elif groups & {"phq9_item", "phq9_item9", "phq9_total"} and (member := _item_code(res)):
            value, why = score_value(codesets, res)
            items.add(res, member, value, day)
            if member in _TOTAL_CODES or member == _ITEM9:
                kind = ObservationKind.PHQ9_TOTAL if member in _TOTAL_CODES else ObservationKind.PHQ9_ITEM9
                if (fact := _score(res["id"], kind, day, value, where, skipped, why, note)) is not None:
                    scores.append(fact)
        elif score_groups := groups & _SCORE_GROUPS:
            kind = ObservationKind(next(iter(score_groups)))
            value, why = score_value(codesets, res)
            if (fact := _score(res["id"], kind, day, value, where, skipped, why, note)) is not None:
                scores.append(fact)
        elif "bp_panel" in groups:
            systolic = diastolic = None
            for comp in arr(res, "component"):
                comp_groups = codesets.observation_groups(comp.get("code"))
                value = number_value(comp)
                if "systolic" in comp_groups:
                    systolic = value
                elif "diastolic" in comp_groups:
                    diastolic = value
            if systolic is None and diastolic is None:
                if lenient_bp:
                    _count_unreadable_bp(where, unreadable_bp)
                    continue
                skipped.append(SkippedEntry(where, "Observation", "blood pressure panel without values"))
                continue
            if not all(plausible_mmhg(v) for v in (systolic, diastolic) if v is not None):
                skipped.append(SkippedEntry(where, "Observation", "implausible blood pressure value"))
                continue
            pressures.append(BloodPressureFact(res["id"], day, systolic, diastolic, note=note))
        elif groups & {"systolic", "diastolic"}:
            value = number_value(res)
            if value is None:
                if lenient_bp:
                    _count_unreadable_bp(where, unreadable_bp)
                continue
            if not plausible_mmhg(value):
                skipped.append(SkippedEntry(where, "Observation", "implausible blood pressure value"))
                continue
            stamp = str(res.get("effectiveDateTime") or day.isoformat())
            half = halves.setdefault((stamp, _subject_key(res)), {"id": res["id"], "day": day, "note": ""})
            half["systolic" if "systolic" in groups else "diastolic"] = value
            half["note"] = half["note"] or note
        elif "pregnancy_status" in groups:
            pregnant = any(text(c, "code") == _PREGNANT for c in codings(obj(res, "valueCodeableConcept")))
            labs.append(LabResultFact(res["id"], ObservationKind.PREGNANCY_STATUS, "pregnancy status",
                                      _first_code(res), day, pregnant, note=note))
        elif groups & _STATUS_GROUPS:
            # A social-history Observation coded for drug misuse (US Core's substance-use status) or for alcohol
            # misuse (issue #20): its value says whether the misuse is current.
            current = _records_use(res)
            substance = "alcohol" if "alcohol_misuse_status" in groups else _substance(res)
            labs.append(LabResultFact(res["id"], ObservationKind.SUBSTANCE_USE_STATUS, substance,
                                      _first_code(res), day, bool(current), interpretable=current is not None,
                                      note=note))
        elif "pregnancy_test" in groups:
            positive = _is_positive(res)
            labs.append(LabResultFact(res["id"], ObservationKind.PREGNANCY_TEST, "hCG", _first_code(res), day,
                                      bool(positive), interpretable=positive is not None, note=note))
        elif screens := groups & set(_DRUG_SCREENS):
            analyte = _DRUG_SCREENS[next(iter(screens))]
            positive = _is_positive(res)
            labs.append(LabResultFact(res["id"], ObservationKind.DRUG_SCREEN, analyte, _first_code(res), day,
                                      bool(positive), interpretable=positive is not None, note=note))
    for half in halves.values():
        pressures.append(BloodPressureFact(half["id"], half["day"], half.get("systolic"), half.get("diastolic"),
                                           note=half["note"]))
    scores.extend(items.computed_totals())
    return scores, pressures, labs


_SCORE_GROUPS = {"phq9_total", "phq9_item9", "gad7_total"}
_STATUS_GROUPS = {"substance_use_status", "alcohol_misuse_status"}
# Blood pressures outside this range are recording errors (a unit mix-up, a typo), not readings: reported, not used.
_PLAUSIBLE_MMHG = (20.0, 350.0)
_BP_GROUPS = {"bp_panel", "systolic", "diastolic"}
#: The nine PHQ-9 items (clinical.md §5 [S37]): items 1-8 (observation_codes.toml ``phq9_item``) and item 9.
_ITEM9 = "44260-8"
PHQ9_ITEMS = ("44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3", _ITEM9)
_TOTAL_CODES = {"44261-6", "89204-2"}


def _item_code(res: Any) -> str | None:
    """The LOINC code of a PHQ-9 item or total, as an Observation or component carries it."""
    for c in codings(obj(res, "code")):
        code = text(c, "code").strip()
        if code in PHQ9_ITEMS or code in _TOTAL_CODES:
            return code
    return None


class _PanelItems:
    """PHQ-9 items seen one by one, grouped into administrations: by the panel that lists them as members
    (``hasMember``), else by the instant they were taken. A group with all nine items and no total recorded gets
    the sum as its total (issue #20)."""

    def __init__(self) -> None:
        self._member_of: dict[str, str] = {}
        self._groups: dict[str, dict[str, tuple[float | None, str, dt.date]]] = {}
        self._has_total: set[str] = set()
        self._pending: list[tuple[dict[str, Any], str, float | None, dt.date]] = []

    def panel(self, res: dict[str, Any]) -> None:
        for member in arr(res, "hasMember"):
            ref = text(member, "reference")
            if ref:
                self._member_of[ref.rsplit("/", 1)[-1]] = res["id"]

    def add(self, res: dict[str, Any], code: str, value: float | None, day: dt.date) -> None:
        self._pending.append((res, code, value, day))

    def computed_totals(self) -> list[ScoreFact]:
        # Panels can come after their members in a Bundle: group only once every panel has been seen.
        for res, code, value, day in self._pending:
            key = self._member_of.get(res["id"]) or f"{res.get('effectiveDateTime') or day!s}|{_subject_key(res)}"
            if code in _TOTAL_CODES:
                self._has_total.add(key)
            else:
                self._groups.setdefault(key, {})[code] = (value, res["id"], day)
        found = []
        panels = set(self._member_of.values())
        for key, group in self._groups.items():
            if key in self._has_total:
                continue
            total = items_total({code: v for code, (v, _, _) in group.items()})
            if total is None:
                continue
            _, rid, day = group[_ITEM9]
            panel = key if key in panels else rid
            found.append(ScoreFact(panel, ObservationKind.PHQ9_TOTAL, day, total, note=COMPUTED_FROM_ITEMS))
        return found


def items_total(items: dict[str, float | None]) -> float | None:
    """The PHQ-9 total as the sum of its nine items, each 0-3; None unless all nine are there and readable."""
    values = [items.get(code) for code in PHQ9_ITEMS]
    if any(v is None or not 0 <= v <= 3 for v in values):
        return None
    return float(sum(v for v in values if v is not None))


def score_value(codesets: CodeSets, holder: Any) -> tuple[float | None, str]:
    """A questionnaire score as EHRs send it (issue #20): a number (valueQuantity, valueInteger, valueDecimal), an
    integer valueString ("12"), or a LOINC answer code (valueCodeableConcept, valueCoding: LA6568-5 = 0 …
    LA6571-9 = 3). With no value, why not (for the skipped-entries report)."""
    value = number_value(holder)
    if value is not None or not isinstance(holder, dict):
        return value, ""
    raw = holder.get("valueString")
    if isinstance(raw, str):
        if _INTEGER_TEXT.match(raw):
            return float(int(raw)), ""
        return None, f"valueString {raw[:40]!r} is not an integer"
    answers = [*codings(obj(holder, "valueCodeableConcept")), obj(holder, "valueCoding")]
    for coding in answers:
        code = text(coding, "code").strip()
        # The LA codes are LOINC's; a coding without a system is read by its code alone (they are unambiguous).
        if code in codesets.score_answers and system_key(text(coding, "system")) in ("LOINC", None):
            return float(codesets.score_answers[code]), ""
    named = next((text(c, "code") for c in answers if text(c, "code")), "")
    return None, f"answer {named[:40]!r} is not a known score" if named else ""


def plausible_mmhg(mmhg: float) -> bool:
    return _PLAUSIBLE_MMHG[0] <= mmhg <= _PLAUSIBLE_MMHG[1]


def _score(rid: str, kind: ObservationKind, day: dt.date, value: float | None, where: str,
           skipped: list[SkippedEntry], why: str = "", note: str = "") -> ScoreFact | None:
    low, high = _SCORE_RANGES[kind]
    if value is None and why:
        skipped.append(SkippedEntry(where, "Observation", f"{kind.value} {why}"))
        return None
    if value is None or not low <= value <= high:
        skipped.append(SkippedEntry(where, "Observation", f"{kind.value} value {value} outside {low}-{high}"))
        return None
    return ScoreFact(rid, kind, day, value, note=note)


def _panel_scores(codesets: CodeSets, res: dict[str, Any], day: dt.date,
                  skipped: list[SkippedEntry], note: str = "") -> list[ScoreFact]:
    """A PHQ-9 panel (44249-1): its total as a 44261-6 component, else the panel's own value, else the sum of its
    nine item components; item 9 likewise. Totals and items kept as members (``hasMember``) are Observations of
    their own and are read as such."""
    where = f"Observation/{res['id']}"
    found: list[ScoreFact] = []
    item_values: dict[str, float | None] = {}
    for comp in arr(res, "component"):
        code = _item_code(comp)
        groups = codesets.observation_groups(comp.get("code")) & _SCORE_GROUPS
        value, why = score_value(codesets, comp)
        if code is not None and code not in _TOTAL_CODES:
            item_values[code] = value
        if groups:
            kind = ObservationKind(next(iter(groups)))
            if (fact := _score(res["id"], kind, day, value, where, skipped, why, note)) is not None:
                found.append(fact)
    if not any(f.kind is ObservationKind.PHQ9_TOTAL for f in found):
        value, why = score_value(codesets, res)
        if value is not None or why:
            fact = _score(res["id"], ObservationKind.PHQ9_TOTAL, day, value, where, skipped, why, note)
            if fact is not None:
                found.append(fact)
    if not any(f.kind is ObservationKind.PHQ9_TOTAL for f in found) and (total := items_total(item_values)) is not None:
        found.append(ScoreFact(res["id"], ObservationKind.PHQ9_TOTAL, day, total,
                               note="; ".join(n for n in (COMPUTED_FROM_ITEMS, note) if n)))
    return found


_QR_TOTAL_LINKS = {"44261-6", "phq9_total", "phq-9-total", "total", "total-score", "totalscore", "score"}
_QR_ITEM9_LINKS = {"44260-8", "phq9_9", "phq-9-9", "q9", "item9"}


def _questionnaire_scores(codesets: CodeSets, pool: ResourcePool, resources: Iterable[dict[str, Any]],
                          since: dt.date | None, skipped: list[SkippedEntry] | None = None) -> list[ScoreFact]:
    """PHQ-9 totals (and item 9) from QuestionnaireResponses of a PHQ-9 questionnaire; with no total, the sum of
    the nine items (linkIds the items' LOINC codes, as US Core's PHQ-9 QuestionnaireResponse has them)."""
    scores: list[ScoreFact] = []
    for res in resources:
        questionnaire = text(res, "questionnaire").lower()
        if not ("phq" in questionnaire or "44249-1" in questionnaire) or text(res, "status") not in (
                "completed", "amended"):
            continue
        day = parse_day(res.get("authored"))
        if day is None or (since is not None and day < since) or not pool.valid(res):
            continue
        where = f"QuestionnaireResponse/{res['id']}"
        for kind, links in ((ObservationKind.PHQ9_TOTAL, _QR_TOTAL_LINKS), (ObservationKind.PHQ9_ITEM9,
                                                                             _QR_ITEM9_LINKS)):
            value, why = _qr_answer(codesets, arr(res, "item"), links)
            low, high = _SCORE_RANGES[kind]
            if value is not None and low <= value <= high:
                scores.append(ScoreFact(res["id"], kind, day, value, "QuestionnaireResponse"))
            elif why and skipped is not None:
                skipped.append(SkippedEntry(where, "QuestionnaireResponse", f"{kind.value} {why}"))
        if not any(s.id == res["id"] and s.kind is ObservationKind.PHQ9_TOTAL for s in scores):
            items: dict[str, float | None] = {}
            _qr_items(codesets, arr(res, "item"), items)
            total = items_total(items)
            if total is not None:
                scores.append(ScoreFact(res["id"], ObservationKind.PHQ9_TOTAL, day, total, "QuestionnaireResponse",
                                        note=COMPUTED_FROM_ITEMS))
    return scores


def _link(item: dict[str, Any]) -> str:
    # US Core's PHQ-9 QuestionnaireResponse (LHC-Forms) writes linkIds as paths: "/44261-6".
    return text(item, "linkId").strip().lower().rsplit("/", 1)[-1]


def _qr_answer(codesets: CodeSets, items: list[Any], links: set[str], depth: int = 0) -> tuple[float | None, str]:
    if depth > 10:
        return None, ""
    for item in items:
        if not isinstance(item, dict):
            continue
        label = text(item, "text").lower()
        if _link(item) in links or (links is _QR_TOTAL_LINKS and "total" in label):
            why = ""
            for answer in arr(item, "answer"):
                value, why = score_value(codesets, answer)
                if value is not None:
                    return value, ""
            if why:
                return None, why
        found = _qr_answer(codesets, arr(item, "item"), links, depth + 1)
        if found != (None, ""):
            return found
    return None, ""


def _qr_items(codesets: CodeSets, items: list[Any], out: dict[str, float | None], depth: int = 0) -> None:
    if depth > 10:
        return
    for item in items:
        if not isinstance(item, dict):
            continue
        if (link := _link(item)) in PHQ9_ITEMS:
            answers = [score_value(codesets, a)[0] for a in arr(item, "answer")]
            out[link] = next((v for v in answers if v is not None), None)
        _qr_items(codesets, arr(item, "item"), out, depth + 1)


def _records_use(res: dict[str, Any]) -> bool | None:
    """True when a substance-use status records current use (US Core: valueBoolean true), False when it records
    none, None when its value cannot be read."""
    value = res.get("valueBoolean")
    if isinstance(value, bool):
        return value
    concept = obj(res, "valueCodeableConcept")
    labels = [text(concept, "text"), *(text(c, "display") for c in codings(concept)), text(res, "valueString")]
    if any(_TRUE_TEXT.match(t) for t in labels if t):
        return True
    if any(t for t in labels):
        return False
    return None


def _substance(res: dict[str, Any]) -> str:
    """The drug a substance-use status names (its 'Drug or medicament' component), else 'substance'."""
    for comp in arr(res, "component"):
        concept = obj(comp, "valueCodeableConcept")
        name = text(concept, "text") or next((text(c, "display") for c in codings(concept) if text(c, "display")), "")
        if name:
            return name.lower()
    return "substance"


def _one_reading_a_day(pressures: list[BloodPressureFact]) -> list[BloodPressureFact]:
    """Readings on one day count as one: the lowest systolic and the lowest diastolic of that day (as the HEDIS
    blood-pressure measure does), kept under the id of the reading with the lowest systolic."""
    by_day: dict[dt.date, list[BloodPressureFact]] = {}
    for b in pressures:
        by_day.setdefault(b.day, []).append(b)
    out = []
    for day in sorted(by_day):
        readings = by_day[day]
        systolics = [b.systolic for b in readings if b.systolic is not None]
        diastolics = [b.diastolic for b in readings if b.diastolic is not None]
        lowest = min(readings, key=lambda b: (b.systolic is None, b.systolic or 0.0))
        lowest_diastolic = min(readings, key=lambda b: (b.diastolic is None, b.diastolic or 0.0))
        # The mark of an entry read leniently stays with the value it gave.
        note = lowest.note or lowest_diastolic.note
        out.append(BloodPressureFact(lowest.id, day, min(systolics, default=None), min(diastolics, default=None),
                                     len(readings), note))
    return out


def _subject_key(res: dict[str, Any]) -> str:
    return str((res.get("subject") or {}).get("reference") or "")


def _first_code(res: dict[str, Any]) -> str:
    for c in (res.get("code") or {}).get("coding") or []:
        if c.get("code"):
            return str(c["code"])
    return ""


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
                verification = _status_code(res.get("verificationStatus"))
                if verification in _IGNORED_VERIFICATION:
                    break
                substance = next((n for n in names if n), "ketamine")
                yield AllergyFact(
                    id=res["id"],
                    substance=substance,
                    clinical_status=AllergyStatus.of(_status_code(res.get("clinicalStatus"))),
                    verification_status=verification or "unspecified",
                )
                break
