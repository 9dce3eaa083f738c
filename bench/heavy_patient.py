"""A deterministic heavy synthetic patient: years of chart, about 2,500 resources and 1 MB of JSON.

The mix follows what an EHR search returns for a long-followed patient: most Observations are labs and vitals the
rules never read, many medication orders are unrelated, encounters and procedures are noise.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

AS_OF = dt.date(2026, 11, 1)
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"

_LABS = [("2345-7", "Glucose"), ("2160-0", "Creatinine"), ("718-7", "Hemoglobin"), ("2093-3", "Cholesterol"),
         ("4548-4", "HbA1c"), ("2951-2", "Sodium"), ("2823-3", "Potassium"), ("6690-2", "WBC")]
_OTHER_DRUGS = [("314076", "lisinopril 10 MG Oral Tablet"), ("860975", "metformin 500 MG Oral Tablet"),
                ("617312", "atorvastatin 40 MG Oral Tablet"), ("197361", "amlodipine 5 MG Oral Tablet")]
_ANTIDEPRESSANTS = [("312938", "sertraline 100 MG Oral Tablet"), ("313586", "venlafaxine 75 MG Oral Tablet"),
                    ("993518", "12 HR bupropion hydrochloride 150 MG Extended Release Oral Tablet")]
_CONDITIONS = [("E11.9", "Type 2 diabetes"), ("I10", "Essential hypertension"), ("E78.5", "Hyperlipidemia"),
               ("M54.5", "Low back pain"), ("J06.9", "Upper respiratory infection")]


def heavy_bundle(target_resources: int = 2500, seed: int = 7, days_back: int = 3000) -> dict[str, Any]:
    rnd = random.Random(seed)
    pid = "heavy-1"
    subject = {"reference": f"Patient/{pid}"}
    out: list[dict[str, Any]] = [{"resourceType": "Patient", "id": pid, "gender": "female",
                                  "birthDate": "1970-03-03", "name": [{"family": "Heavy", "given": ["Hana"]}]}]

    def day(back: int) -> str:
        return (AS_OF - dt.timedelta(days=back)).isoformat()

    def obs(i: int, code: str, display: str, back: int, **value: Any) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": f"o{i}", "status": "final", "subject": subject,
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                          "code": "laboratory"}]}],
                "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
                "effectiveDateTime": day(back) + "T08:00:00Z", "issued": day(back) + "T12:00:00Z", **value}

    out.append({"resourceType": "Condition", "id": "mdd", "subject": subject,
                "clinicalStatus": {"coding": [{"code": "active"}]},
                "code": {"coding": [{"system": ICD, "code": "F33.2", "display": "MDD, recurrent, severe"}]},
                "onsetDateTime": day(2000)})
    i = 0
    while len(out) < target_resources:
        i += 1
        kind = rnd.random()
        back = rnd.randint(1, days_back)
        if kind < 0.45:
            code, display = rnd.choice(_LABS)
            out.append(obs(i, code, display, back, valueQuantity={"value": round(rnd.uniform(1, 200), 1),
                                                                    "unit": "mg/dL"}))
        elif kind < 0.55:
            out.append(obs(i, "85354-9", "Blood pressure panel", back, component=[
                {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                 "valueQuantity": {"value": rnd.randint(110, 150), "unit": "mm[Hg]"}},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                 "valueQuantity": {"value": rnd.randint(65, 95), "unit": "mm[Hg]"}}]))
        elif kind < 0.62:
            out.append(obs(i, "44261-6", "PHQ-9 total score", back, valueInteger=rnd.randint(5, 24)))
        elif kind < 0.75:
            code, display = rnd.choice(_OTHER_DRUGS + _ANTIDEPRESSANTS)
            out.append({"resourceType": "MedicationRequest", "id": f"mr{i}", "status": "completed",
                        "intent": "order", "subject": subject, "authoredOn": day(back),
                        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code,
                                                                  "display": display}], "text": display},
                        "dosageInstruction": [{"text": "1 tablet twice daily", "timing": {"code": {"coding": [
                            {"code": "BID"}]}}, "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}]}],
                        "dispenseRequest": {"expectedSupplyDuration": {"value": 30, "code": "d"},
                                            "numberOfRepeatsAllowed": rnd.randint(0, 3)}})
        elif kind < 0.82:
            code, display = rnd.choice(_CONDITIONS)
            out.append({"resourceType": "Condition", "id": f"c{i}", "subject": subject,
                        "clinicalStatus": {"coding": [{"code": rnd.choice(["active", "resolved"])}]},
                        "code": {"coding": [{"system": ICD, "code": code, "display": display}]},
                        "onsetDateTime": day(back)})
        else:
            out.append({"resourceType": "Encounter", "id": f"e{i}", "status": "finished",
                        "class": {"code": "AMB"}, "subject": subject,
                        "period": {"start": day(back), "end": day(back)},
                        "reasonCode": [{"text": "follow-up visit " * 3}]})
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [{"fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in out]}


def heavy_bytes(target_resources: int = 2500, days_back: int = 3000) -> bytes:
    """``days_back`` spreads the chart over that many days: 3,000 is about eight years of follow-up."""
    return json.dumps(heavy_bundle(target_resources, days_back=days_back)).encode()
