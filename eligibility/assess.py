"""The assessment of one patient: depression, treatment resistance, severity, contraindications → a verdict.

Pure: facts and a policy in, an :class:`Assessment` out. No I/O, no clock (``as_of`` is an argument).
"""

from __future__ import annotations

import datetime as dt

from fhir_mapping import (
    ClinicalFacts,
    CodeSets,
    DataDomain,
    Gender,
    MedicationCategory,
    ObservationKind,
    ResourcePool,
    to_facts,
)

from .contraindications import assess_contraindications, condition_evidence
from .course import ResponseClass, TreatmentCourse, assess_course, course_summary, response_words
from .gap_words import gap_workup
from .model import (
    Adequacy,
    AssessedCriterion,
    Assessment,
    ContraindicationFinding,
    ContraindicationId,
    Criterion,
    DepressionFinding,
    Evidence,
    Mode,
    Outcome,
    Presence,
    Reason,
    ReasonKind,
    Score,
    Severity,
    TreatmentResistance,
    TrialAssessment,
    Verdict,
    Warning,
    WarningId,
    WorkupItem,
    WorkupKind,
)
from .policy import Policy
from .trials import assess_treatment_resistance


def assess_depression(facts: ClinicalFacts) -> DepressionFinding:
    mdd = [condition_evidence(c) for c in facts.conditions
           if "major_depression" in c.concepts and c.clinical_status.is_active]
    anxiety = tuple(condition_evidence(c) for c in facts.conditions
                    if "anxiety" in c.concepts and c.clinical_status.is_active)
    if mdd:
        return DepressionFinding(Presence.PRESENT, tuple(mdd), anxiety)
    if facts.lacks(DataDomain.CONDITIONS):
        return DepressionFinding(Presence.UNKNOWN, (), anxiety)
    return DepressionFinding(Presence.ABSENT, (), anxiety)


def assess_severity(facts: ClinicalFacts, policy: Policy, as_of: dt.date) -> Severity:
    """Severity for a first start: the latest PHQ-9 of the policy's window."""
    t = policy.thresholds
    lo = as_of - dt.timedelta(days=t.severity_window_days)
    recent = [s for s in facts.scores if s.kind is ObservationKind.PHQ9_TOTAL and lo <= s.day <= as_of]
    if facts.lacks(DataDomain.PHQ9):
        return Severity(Criterion.UNKNOWN, t.severity_phq9_min, None, "PHQ-9 scores could not be fetched")
    if not recent:
        return Severity(Criterion.UNKNOWN, t.severity_phq9_min, None,
                        f"no PHQ-9 in the last {t.severity_window_days} days")
    latest = recent[-1]
    score = Score(latest.value, latest.day, latest.reference, latest.note)
    # "PHQ-9 12 on 2026-10-20, computed from the nine items": how a score was obtained is part of its evidence.
    noted = f", {latest.note}" if latest.note else ""
    if latest.value >= t.severity_phq9_min:
        return Severity(Criterion.MET, t.severity_phq9_min, score,
                        f"PHQ-9 {latest.value:g} on {latest.day.isoformat()}{noted} "
                        f"(at or above {t.severity_phq9_min:g})")
    if facts.lacks(DataDomain.TREATMENT_COURSE):
        # A low score may be a response to a course whose doses could not be read: never "not indicated" then.
        return Severity(Criterion.UNKNOWN, t.severity_phq9_min, score,
                        f"PHQ-9 {latest.value:g} on {latest.day.isoformat()}{noted} "
                        f"(below {t.severity_phq9_min:g}), but "
                        "ketamine/esketamine doses could not be fetched: a low score may be a response to a course "
                        "in progress")
    return Severity(Criterion.NOT_MET, t.severity_phq9_min, score,
                    f"PHQ-9 {latest.value:g} on {latest.day.isoformat()}{noted} (below {t.severity_phq9_min:g})")


def assess_baseline_severity(course: TreatmentCourse, facts: ClinicalFacts, policy: Policy) -> Severity:
    """Severity for a current course: the PHQ-9 before its first dose (a score that fell during the course is its
    response, never a reason against it)."""
    t = policy.thresholds
    b = course.baseline_phq9
    if b is None:
        why = ("PHQ-9 scores could not be fetched" if facts.lacks(DataDomain.PHQ9) else
               f"no PHQ-9 in the {t.severity_window_days} days before the first dose "
               f"({course.first_dose.isoformat()})")
        return Severity(Criterion.UNKNOWN, t.severity_phq9_min, None, why)
    met = b.value >= t.severity_phq9_min
    return Severity(Criterion.MET if met else Criterion.NOT_MET, t.severity_phq9_min, b,
                    f"PHQ-9 {b.value:g} on {b.day.isoformat()}, before the first dose "
                    f"({'at or above' if met else 'below'} {t.severity_phq9_min:g})")


_CI_LABELS = {
    ContraindicationId.PSYCHOSIS: "psychotic disorder",
    ContraindicationId.BIPOLAR: "bipolar disorder",
    ContraindicationId.UNCONTROLLED_HYPERTENSION: "uncontrolled hypertension",
    ContraindicationId.CARDIOVASCULAR_DISEASE: "serious heart disease",
    ContraindicationId.ANEURYSM_OR_AVM: "aneurysm or arteriovenous malformation",
    ContraindicationId.INTRACEREBRAL_HEMORRHAGE: "intracerebral hemorrhage",
    ContraindicationId.SUBSTANCE_USE: "substance misuse",
    ContraindicationId.PREGNANCY: "pregnancy",
    ContraindicationId.KETAMINE_HYPERSENSITIVITY: "ketamine/esketamine hypersensitivity",
}


def contraindication_label(cid: ContraindicationId) -> str:
    return _CI_LABELS[cid]


def _workup(
    facts: ClinicalFacts,
    policy: Policy,
    as_of: dt.date,
    tr: TreatmentResistance,
    severity: Severity,
    cis: dict[ContraindicationId, ContraindicationFinding],
    course: TreatmentCourse | None = None,
) -> list[WorkupItem]:
    t = policy.thresholds
    items: list[WorkupItem] = []
    if course is not None and course.current:
        items += _course_workup(course, facts, policy, as_of, severity)
    elif severity.status is Criterion.UNKNOWN:
        items.append(WorkupItem(WorkupKind.PHQ9, f"PHQ-9 within the last {t.severity_window_days} days", True))
    bp = cis[ContraindicationId.UNCONTROLLED_HYPERTENSION]
    if bp.status is Presence.UNKNOWN:
        items.append(WorkupItem(WorkupKind.BLOOD_PRESSURE, f"Blood pressure: {bp.explanation}", True))
    items += [item for trial in tr.trials if (item := _trial_workup(trial)) is not None]
    for cid, finding in cis.items():
        if finding.status is Presence.UNKNOWN and finding.evidence and cid is not \
                ContraindicationId.UNCONTROLLED_HYPERTENSION:
            items.append(WorkupItem(WorkupKind.CONDITION_REVIEW,
                                    f"{contraindication_label(cid).capitalize()}: {finding.explanation}", True))
    items += _screen_workup(facts, policy, as_of)
    for step in gap_workup(facts.gaps):
        items.append(WorkupItem(WorkupKind.DATA, step.text, True))
    return items


def _trial_workup(trial: TrialAssessment) -> WorkupItem | None:
    """What to document so that an antidepressant trial can be judged: its adherence, duration or dose while its
    adequacy is unknown; its response when it was adequate but its outcome is unknown. None when nothing is."""
    if trial.adequacy is Adequacy.UNKNOWN and trial.nonadherence:
        return WorkupItem(WorkupKind.ADHERENCE,
                          f"Confirm adherence to {trial.ingredient} ({trial.start.isoformat()} to "
                          f"{trial.end.isoformat()}): non-adherence is recorded in "
                          f"{', '.join(trial.nonadherence)}", True)
    if trial.adequacy is Adequacy.UNKNOWN and trial.duration_unknown:
        return WorkupItem(WorkupKind.TRIAL_DURATION,
                          f"Document how long {trial.ingredient} was taken (prescribed "
                          f"{trial.start.isoformat()}; no end or supply on record)", True)
    if trial.adequacy is Adequacy.UNKNOWN:
        return WorkupItem(WorkupKind.TRIAL_DOSE,
                          f"Document the daily dose of the {trial.ingredient} trial "
                          f"({trial.start.isoformat()} to {trial.end.isoformat()})", True)
    if trial.adequacy is Adequacy.ADEQUATE and trial.outcome is Outcome.UNKNOWN:
        missing = "baseline" if trial.baseline is None else "follow-up"
        return WorkupItem(WorkupKind.TRIAL_RESPONSE,
                          f"Document the response to {trial.ingredient}: no {missing} PHQ-9 on record", True)
    return None


def _screen_workup(facts: ClinicalFacts, policy: Policy, as_of: dt.date) -> list[WorkupItem]:
    """The tests to order when none is on record in their windows: a urine drug screen, and a pregnancy test for a
    patient not recorded as male."""
    t = policy.thresholds
    items: list[WorkupItem] = []
    lo = as_of - dt.timedelta(days=t.drug_screen_window_days)
    if not any(r.kind is ObservationKind.DRUG_SCREEN and r.interpretable and lo <= r.day <= as_of
               for r in facts.lab_results):
        items.append(WorkupItem(WorkupKind.DRUG_SCREEN,
                                f"Urine drug screen (none in the last {t.drug_screen_window_days} days)", False))
    male = facts.patient is not None and facts.patient.gender is Gender.MALE
    lo = as_of - dt.timedelta(days=t.pregnancy_test_window_days)
    if not male and not any(r.kind is ObservationKind.PREGNANCY_TEST and r.interpretable and lo <= r.day <= as_of
                            for r in facts.lab_results):
        items.append(WorkupItem(WorkupKind.PREGNANCY_TEST,
                                f"Pregnancy test if of childbearing potential (none in the last "
                                f"{t.pregnancy_test_window_days} days)", False))
    return items


def _course_workup(course: TreatmentCourse, facts: ClinicalFacts, policy: Policy, as_of: dt.date,
                   severity: Severity) -> list[WorkupItem]:
    t = policy.thresholds
    items: list[WorkupItem] = []
    if severity.status is Criterion.UNKNOWN and not facts.lacks(DataDomain.PHQ9):
        items.append(WorkupItem(WorkupKind.BASELINE_PHQ9,
                                f"Document the PHQ-9 from before the first dose ({course.first_dose.isoformat()}) if "
                                "it was taken elsewhere: the course's indication and benefit are judged from it", True))
    recent = course.latest_phq9 is not None and (as_of - course.latest_phq9.day).days <= t.severity_window_days
    if course.response_due and course.response is ResponseClass.UNKNOWN:
        items.append(WorkupItem(WorkupKind.PHQ9,
                                f"PHQ-9 to assess benefit: induction ended on {course.induction_end.isoformat()}, and "
                                "the label asks for evidence of therapeutic benefit to decide on continued treatment",
                                True))
    elif not recent:
        items.append(WorkupItem(WorkupKind.PHQ9, f"PHQ-9 to follow the response (none in the last "
                                                 f"{t.severity_window_days} days)", False))
    return items


def _warnings(
    facts: ClinicalFacts,
    policy: Policy,
    as_of: dt.date,
    cis: dict[ContraindicationId, ContraindicationFinding],
) -> list[Warning]:
    t = policy.thresholds
    warnings: list[Warning] = []
    lo = as_of - dt.timedelta(days=t.severity_window_days)
    item9 = [s for s in facts.scores if s.kind is ObservationKind.PHQ9_ITEM9 and lo <= s.day <= as_of]
    if item9 and item9[-1].value > t.phq9_item9_warning_above:
        s = item9[-1]
        warnings.append(Warning(WarningId.SUICIDE_RISK_REVIEW,
                                f"PHQ-9 item 9 = {s.value:g} on {s.day.isoformat()}: suicide-risk review "
                                "(e.g. C-SSRS) before proceeding",
                                (Evidence(s.reference, f"PHQ-9 item 9 = {s.value:g}", s.day),)))
    for med in facts.other_medications:
        if not med.is_current(as_of):
            continue
        if med.category is MedicationCategory.CNS_DEPRESSANT:
            kind = {"benzodiazepine": "a benzodiazepine", "z_drug": "a Z-drug hypnotic", "opioid": "an opioid"}.get(
                med.drug_class, "a CNS depressant")
            warnings.append(Warning(WarningId.CNS_DEPRESSANT_SEDATION,
                                    f"Current {med.name} ({kind}): CNS depressants increase the sedation of "
                                    "esketamine; monitor for sedation (label §7.1)",
                                    (Evidence(med.evidence, med.name, med.start),)))
        elif med.category in (MedicationCategory.MAOI, MedicationCategory.PSYCHOSTIMULANT):
            maoi = med.category is MedicationCategory.MAOI
            warnings.append(Warning(WarningId.BP_MONITORING_MAOI if maoi else WarningId.BP_MONITORING_PSYCHOSTIMULANT,
                                    f"Current {med.name} ({'an MAOI' if maoi else 'a psychostimulant'}): monitor "
                                    "blood pressure closely",
                                    (Evidence(med.evidence, med.name, med.start),)))
    if facts.patient is not None:
        age = facts.patient.age_on(as_of)
        if age is not None and age >= t.older_adult_age:
            warnings.append(Warning(WarningId.OLDER_ADULT,
                                    f"Age {age} ({t.older_adult_age} or older): the esketamine label's starting dose "
                                    f"for older adults is {t.esketamine_older_start_mg:g} mg"))
    for cid, finding in cis.items():
        if finding.status is Presence.PRESENT and policy.contraindications[cid].mode is Mode.CAUTION:
            warnings.append(Warning(WarningId.CAUTION,
                                    f"Caution: {contraindication_label(cid)} ({finding.explanation}); "
                                    "weigh benefit against risk", finding.evidence, cid))
    return warnings


def _reasons_against(
    depression: DepressionFinding,
    tr: TreatmentResistance,
    severity: Severity,
    cis: dict[ContraindicationId, ContraindicationFinding],
    policy: Policy,
    course: TreatmentCourse | None = None,
) -> tuple[bool, list[Reason]]:
    """Whether an excluding contraindication is present, and every reason against treating: the contraindications
    (dated in the course when there is one), then the indication not met (as it stood when a course began)."""
    began = " when the course began" if course is not None else ""
    reasons: list[Reason] = []
    excluding = [cid for cid, f in cis.items()
                 if f.status is Presence.PRESENT and policy.contraindications[cid].mode is Mode.EXCLUDE]
    for cid in excluding:
        since = _since_course(course, cis[cid]) if course is not None else ""
        reasons.append(Reason(ReasonKind.CONTRAINDICATION,
                              f"{contraindication_label(cid).capitalize()}: {cis[cid].explanation}{since}", cid))
    if depression.status is Presence.ABSENT:
        if depression.anxiety_evidence:
            reasons.append(Reason(ReasonKind.ANXIETY_WITHOUT_DEPRESSION,
                                  "Anxiety disorder without major depression: not an indication"))
        else:
            reasons.append(Reason(ReasonKind.DEPRESSION_ABSENT, "No active major depressive disorder on record"))
    if tr.status is Criterion.NOT_MET:
        reasons.append(Reason(ReasonKind.TREATMENT_RESISTANCE_NOT_MET,
                              f"Not treatment-resistant{began}: {tr.explanation}"))
    if severity.status is Criterion.NOT_MET:
        reasons.append(Reason(ReasonKind.SEVERITY_NOT_MET, f"Severity below threshold{began}: {severity.explanation}"))
    return bool(excluding), reasons


def _decide(
    depression: DepressionFinding,
    tr: TreatmentResistance,
    severity: Severity,
    cis: dict[ContraindicationId, ContraindicationFinding],
    policy: Policy,
) -> tuple[Verdict, list[Reason]]:
    """The verdict and the reasons for it: an excluding contraindication, else a criterion not met, else anything
    unknown, else candidate."""
    excluding, reasons = _reasons_against(depression, tr, severity, cis, policy)
    if excluding:
        return Verdict.CONTRAINDICATED, reasons
    if reasons:
        return Verdict.NOT_INDICATED, reasons
    unknowns = _unknowns(depression, tr, severity, cis)
    if unknowns:
        return Verdict.NEEDS_WORKUP, unknowns
    return Verdict.CANDIDATE, [Reason(ReasonKind.CANDIDATE,
                                      f"Major depression, {tr.failed_adequate_trials} failed adequate antidepressant "
                                      f"trials, {severity.explanation}, no contraindication documented")]


def _unknowns(
    depression: DepressionFinding,
    tr: TreatmentResistance,
    severity: Severity,
    cis: dict[ContraindicationId, ContraindicationFinding],
) -> list[Reason]:
    found: list[Reason] = []
    if depression.status is Presence.UNKNOWN:
        found.append(Reason(ReasonKind.UNKNOWN, "Depression diagnosis unknown: conditions could not be fetched",
                            AssessedCriterion.DEPRESSION))
    if tr.status is Criterion.UNKNOWN:
        found.append(Reason(ReasonKind.UNKNOWN, f"Treatment resistance unknown: {tr.explanation}",
                            AssessedCriterion.TREATMENT_RESISTANCE))
    if severity.status is Criterion.UNKNOWN:
        found.append(Reason(ReasonKind.UNKNOWN, f"Severity unknown: {severity.explanation}",
                            AssessedCriterion.SEVERITY))
    for cid, f in cis.items():
        if f.status is Presence.UNKNOWN:
            found.append(Reason(ReasonKind.UNKNOWN,
                                f"{contraindication_label(cid).capitalize()} unknown: {f.explanation}", cid))
    return found


def _since_course(course: TreatmentCourse, finding: ContraindicationFinding) -> str:
    """' (new since the course began: positive pregnancy test on 2026-11-10, 19 days into the course)'."""
    dated = sorted((e for e in finding.evidence if e.day is not None and e.day >= course.first_dose),
                   key=lambda e: e.day or course.first_dose)
    if not dated:
        return ""
    e = dated[-1]
    assert e.day is not None
    return (f" (new since the course began: {e.description} on {e.day.isoformat()}, "
            f"{course.days_into(e.day)} days into the course)")


def _decide_course(
    course: TreatmentCourse,
    depression: DepressionFinding,
    tr: TreatmentResistance,
    severity: Severity,
    cis: dict[ContraindicationId, ContraindicationFinding],
    policy: Policy,
) -> tuple[Verdict, list[Reason]]:
    """A current course: contraindications now; the indication as it stood before the first dose; then the benefit.
    A PHQ-9 that fell during the course is its response, never a reason against it."""
    excluding, reasons = _reasons_against(depression, tr, severity, cis, policy, course)
    if excluding:
        return Verdict.CONTRAINDICATED, reasons
    if reasons:
        return Verdict.NOT_INDICATED, reasons
    unknowns = _unknowns(depression, tr, severity, cis)
    if course.response_due and course.response is ResponseClass.UNKNOWN:
        why = ("no PHQ-9 before the first dose" if course.baseline_phq9 is None else
               "no PHQ-9 since the first dose" if course.latest_phq9 is None else
               f"no PHQ-9 in the last {policy.thresholds.severity_window_days} days")
        unknowns.append(Reason(ReasonKind.UNKNOWN, f"Benefit at the end of induction unknown: {why}",
                               AssessedCriterion.RESPONSE))
    if unknowns:
        return Verdict.NEEDS_WORKUP, unknowns
    line = course_summary(course)
    if course.response_due and course.response in (ResponseClass.PARTIAL, ResponseClass.NONE):
        return Verdict.REASSESS, [Reason(ReasonKind.REASSESS,
                                         f"{line}: induction has ended with {response_words(course.response)}; "
                                         "evaluate the evidence of therapeutic benefit before continuing")]
    return Verdict.CONTINUE, [Reason(ReasonKind.CONTINUE, f"{line}: no contraindication documented")]


def assess(facts: ClinicalFacts, policy: Policy, as_of: dt.date) -> Assessment:
    course = assess_course(facts, policy, as_of)
    depression = assess_depression(facts)
    cis = assess_contraindications(facts, policy, as_of)
    if course is not None and course.current:
        # The indication as it stood when the course began; contraindications as they stand now.
        tr = assess_treatment_resistance(facts, policy, course.first_dose)
        severity = assess_baseline_severity(course, facts, policy)
        verdict, reasons = _decide_course(course, depression, tr, severity, cis, policy)
    else:
        tr = assess_treatment_resistance(facts, policy, as_of)
        severity = assess_severity(facts, policy, as_of)
        verdict, reasons = _decide(depression, tr, severity, cis, policy)
    return Assessment(
        patient=f"Patient/{facts.patient_id or (facts.patient.id if facts.patient else 'unknown')}",
        as_of=as_of,
        policy=policy.id,
        verdict=verdict,
        reasons=tuple(reasons),
        depression=depression,
        treatment_resistance=tr,
        severity=severity,
        contraindications=cis,
        workup=tuple(_workup(facts, policy, as_of, tr, severity, cis, course)),
        warnings=tuple(_warnings(facts, policy, as_of, cis)),
        data_gaps=tuple(g.describe() for g in facts.gaps),
        gaps=tuple(facts.gaps),
        skipped_entries=tuple(f"{s.where}: {s.reason}" for s in facts.skipped),
        course=course,
    )


def assess_pool(
    pool: ResourcePool,
    policy: Policy,
    as_of: dt.date,
    patient_id: str | None = None,
    codesets: CodeSets | None = None,
) -> tuple[Assessment, ClinicalFacts]:
    """Map a pool of FHIR resources with this policy's settings and assess it; the facts come back too."""
    facts = to_facts(pool, patient_id, codesets, merge_gap_days=policy.thresholds.course_merge_gap_days,
                     observations_since=policy.observation_horizon(as_of),
                     blood_pressure_since=policy.blood_pressure_horizon(as_of))
    return assess(facts, policy, as_of), facts
