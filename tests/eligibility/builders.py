"""Small constructors of clinical facts, so rule tests read like the clinical situation they describe."""

from __future__ import annotations

import datetime as dt

from fhir_mapping import (
    AllergyFact,
    AllergyStatus,
    BloodPressureFact,
    ClinicalFacts,
    ClinicalStatus,
    ConditionFact,
    Course,
    DataDomain,
    DataGap,
    DoseSegment,
    DoseSource,
    DrugClass,
    ExposureKind,
    GapReason,
    Gender,
    KetamineExposure,
    KetamineProduct,
    LabResultFact,
    MatchMethod,
    ObservationKind,
    PatientFact,
    ResourceType,
    ScoreFact,
    domains_of,
)

AS_OF = dt.date(2026, 11, 1)


def ago(days: int) -> dt.date:
    return AS_OF - dt.timedelta(days=days)


def condition(concept: str, *, status: ClinicalStatus = ClinicalStatus.ACTIVE, onset: int | None = 400,
              recorded: int | None = None, cid: str = "c1", code: str = "X") -> ConditionFact:
    return ConditionFact(cid, frozenset({concept}), code, "ICD10CM", concept, status, "confirmed",
                         ago(onset) if onset is not None else None, None,
                         ago(recorded) if recorded is not None else None)


def course(ingredient: str, start: int, end: int | None, mg: float | None, *, drug_class: DrugClass = DrugClass.SSRI,
           ev: str = "MedicationStatement/m1") -> Course:
    return Course(ingredient, drug_class, MatchMethod.RXNORM_INGREDIENT,
                  (DoseSegment(ago(start), ago(end) if end is not None else None, mg,
                               DoseSource.STRUCTURED if mg is not None else DoseSource.NONE, ev),))


def phq9(day: int, value: float, sid: str | None = None) -> ScoreFact:
    return ScoreFact(sid or f"phq{day}", ObservationKind.PHQ9_TOTAL, ago(day), value)


def item9(day: int, value: float) -> ScoreFact:
    return ScoreFact(f"i9-{day}", ObservationKind.PHQ9_ITEM9, ago(day), value)


def bp(day: int, systolic: float | None, diastolic: float | None) -> BloodPressureFact:
    return BloodPressureFact(f"bp{day}", ago(day), systolic, diastolic)


def screen(day: int, positive: bool, analyte: str = "cocaine") -> LabResultFact:
    return LabResultFact(f"uds{day}", ObservationKind.DRUG_SCREEN, analyte, "3397-7", ago(day), positive)


def hcg(day: int, positive: bool) -> LabResultFact:
    return LabResultFact(f"hcg{day}", ObservationKind.PREGNANCY_TEST, "hCG", "2106-3", ago(day), positive)


def allergy(status: str = "active") -> AllergyFact:
    return AllergyFact("a1", "esketamine", AllergyStatus(status), "confirmed")


def gap(rtype: ResourceType, reason: GapReason = GapReason.TIMEOUT, *domains: DataDomain) -> DataGap:
    """A gap in the searches of ``rtype`` (every domain they carry), or only in ``domains`` when given."""
    return DataGap(rtype, reason, domains=frozenset(domains) or domains_of(rtype))


def dose(day: int, kind: ExposureKind = ExposureKind.ADMINISTRATION,
         product: KetamineProduct = KetamineProduct.ESKETAMINE_NASAL) -> KetamineExposure:
    """An esketamine dose given ``day`` days before AS_OF."""
    return KetamineExposure(f"MedicationAdministration/d{day}", kind, product, "Spravato 56 mg", ago(day), ago(day),
                            dose_mg=56)


def doses(*days: int) -> tuple[KetamineExposure, ...]:
    return tuple(sorted((dose(d) for d in days), key=lambda k: k.start))


def twice_weekly(first: int, count: int) -> tuple[KetamineExposure, ...]:
    """``count`` induction doses from ``first`` days ago, 3 and 4 days apart."""
    days, day = [], first
    for i in range(count):
        days.append(day)
        day -= (3, 4)[i % 2]
    return doses(*days)


def ketamine_record(start: int, end: int | None, *, kind: ExposureKind = ExposureKind.STATEMENT,
                    active: bool = True) -> KetamineExposure:
    """An esketamine order or statement (a span: no end written means still running when active)."""
    return KetamineExposure(f"MedicationStatement/k{start}", kind, KetamineProduct.ESKETAMINE_NASAL, "Spravato",
                            ago(start), ago(end) if end is not None else None, active=active)


def patient(gender: Gender = Gender.FEMALE, born: str = "1985-01-01") -> PatientFact:
    return PatientFact("p1", gender, dt.date.fromisoformat(born), "Test Patient")


def trd_candidate(**changes: object) -> ClinicalFacts:
    """A patient who meets every criterion: MDD, two failed adequate trials, PHQ-9 19, controlled BP."""
    base: dict[str, object] = dict(
        patient=patient(),
        conditions=(condition("major_depression"),),
        courses=(course("sertraline", 420, 330, 150, ev="MedicationStatement/s"),
                 course("escitalopram", 300, 215, 20, ev="MedicationStatement/e")),
        scores=(phq9(425, 21), phq9(335, 19), phq9(302, 20), phq9(220, 18), phq9(12, 19)),
        blood_pressures=(bp(60, 132, 84), bp(12, 128, 82)),
        lab_results=(screen(12, False), hcg(12, False)),
        patient_id="p1",
    )
    base.update(changes)
    return ClinicalFacts(**base)  # type: ignore[arg-type]
