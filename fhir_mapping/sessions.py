"""Treatment sessions as typed facts: the appointment being booked and the patient's other sessions, the ketamine
or esketamine given in an encounter, the blood pressures taken in it (with their times), and the encounter itself.

The session rules reason in minutes, so these facts keep instants (timezone-aware), unlike the order-time facts,
which reason in days.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._json import arr, codings, obj, text
from .codesets import CodeSets
from .facts import ResourceType
from .loading import ResourcePool
from .mapping import number_value, plausible_mmhg
from .orders import ketamine_concept, medication_concept

_SESSION_WORDS = re.compile(r"\b(es)?ketamine\b|\bspravato\b", re.I)
_ESKETAMINE_WORDS = re.compile(r"\besketamine\b|\bspravato\b", re.I)
# What a scheduler writes when a ride home is arranged (the label: no driving until the next day) — and what says
# the patient drives, which is no arrangement at all.
_TRANSPORT_WORDS = re.compile(r"\b(transport\w*|driver|driven|drives?|ride|escort\w*|taxi|cab|pick[- ]?up|picked up|"
                              r"accompanied|lift home)\b", re.I)
_SELF_DRIVING = re.compile(r"\b(drives?|driving|will drive) (him|her|them)sel(f|ves)\b|\bself[- ]driv\w*|"
                           r"\b(patient|pt) (will )?drives?\b|\bno (transport|ride|driver)\b", re.I)
_ACTIVE_APPOINTMENT = {"proposed", "pending", "booked", "arrived", "fulfilled", "checked-in"}
_GIVEN = {"completed", "in-progress"}
_FINAL_OBSERVATION = {"final", "amended", "corrected", "preliminary"}
# v3 ActCode encounter classes, and the words EHRs put in class.code or class.display instead (compared in lower case).
_OUTPATIENT_CLASSES = {"amb", "obsenc", "hh", "vr", "ambulatory", "outpatient", "office visit", "clinic"}
_INPATIENT_CLASSES = {"imp", "acute", "nonac", "emer", "prenc", "ss", "inpatient", "emergency", "observation"}


def parse_instant(value: Any) -> dt.datetime | None:
    """A FHIR dateTime or instant with a time, as an aware datetime (no zone written: read as UTC). A date alone
    is not an instant: None."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class SessionAppointment:
    """An appointment, read for what the session rules need."""

    id: str
    start: dt.datetime | None
    end: dt.datetime | None
    status: str
    is_session: bool
    esketamine: bool
    transport_noted: bool
    how_recognised: str

    @property
    def reference(self) -> str:
        return f"Appointment/{self.id}"

    @property
    def minutes(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds() / 60


def _concepts(appointment: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = [c for key in ("serviceType", "reasonCode", "serviceCategory", "specialty") for c in arr(appointment, key)
             if isinstance(c, dict)]
    if obj(appointment, "appointmentType"):
        found.append(obj(appointment, "appointmentType"))
    return found


def _texts(appointment: Mapping[str, Any]) -> list[str]:
    words = [text(appointment, "description"), text(appointment, "comment"), text(appointment, "patientInstruction")]
    for concept in _concepts(appointment):
        words.append(text(concept, "text"))
        words += [text(c, "display") for c in codings(concept)]
    return [w for w in words if w]


def session_appointment(
    appointment: Mapping[str, Any],
    session_codes: frozenset[str],
    resolve: Callable[[str, Mapping[str, Any]], dict[str, Any] | None],
    codesets: CodeSets | None = None,
) -> SessionAppointment:
    """Whether ``appointment`` is a ketamine/esketamine treatment session: by a configured ``system|code`` on its
    type, service or reason; by its words; or by ``basedOn`` an order for those drugs (``resolve`` finds it)."""
    how = ""
    esketamine = False
    for concept in _concepts(appointment):
        for c in codings(concept):
            if f"{text(c, 'system')}|{text(c, 'code')}" in session_codes:
                how = how or f"appointment code {text(c, 'code')}"
    words = " ".join(_texts(appointment))
    if _SESSION_WORDS.search(words):
        how = how or "appointment text"
        esketamine |= bool(_ESKETAMINE_WORDS.search(words))
    for ref in arr(appointment, "basedOn"):
        target = resolve(text(ref, "reference"), appointment) if isinstance(ref, dict) else None
        if target is None:
            continue
        concept = (obj(target, "code") if target.get("resourceType") == "ServiceRequest"
                   else medication_concept(target))
        found, eske = ketamine_concept(concept, codesets)
        if found:
            how = how or f"based on {target.get('resourceType')}/{target.get('id')}"
            esketamine |= eske
    esketamine |= bool(how) and "ketamine" not in words.lower().replace("esketamine", "")
    return SessionAppointment(
        id=text(appointment, "id"), start=parse_instant(appointment.get("start")),
        end=parse_instant(appointment.get("end")) or _end_from_duration(appointment),
        status=text(appointment, "status"), is_session=bool(how), esketamine=esketamine,
        transport_noted=_transport_noted(" ".join([text(appointment, "comment"),
                                                   text(appointment, "patientInstruction"),
                                                   text(appointment, "description")])),
        how_recognised=how)


def _transport_noted(notes: str) -> bool:
    return bool(_TRANSPORT_WORDS.search(notes)) and not _SELF_DRIVING.search(notes)


def _end_from_duration(appointment: Mapping[str, Any]) -> dt.datetime | None:
    start = parse_instant(appointment.get("start"))
    minutes = appointment.get("minutesDuration")
    if start is None or not isinstance(minutes, int) or isinstance(minutes, bool) or minutes <= 0:
        return None
    return start + dt.timedelta(minutes=minutes)


def booked_sessions(pool: ResourcePool, session_codes: frozenset[str], exclude: Iterable[str] = (),
                    codesets: CodeSets | None = None) -> list[SessionAppointment]:
    """The patient's other ketamine/esketamine sessions on record (not cancelled), by start."""
    skip = set(exclude)
    found = []
    for res in pool.of_type(ResourceType.APPOINTMENT):
        if res.get("id") in skip or res.get("status") not in _ACTIVE_APPOINTMENT or not pool.valid(res):
            continue
        appt = session_appointment(res, session_codes, lambda ref, container: pool.resolve(ref, container), codesets)
        if appt.is_session and appt.start is not None:
            found.append(appt)
    return sorted(found, key=lambda a: a.start or dt.datetime.min.replace(tzinfo=dt.UTC))


@dataclass(frozen=True, slots=True)
class Administration:
    """A dose of ketamine or esketamine given (MedicationAdministration, completed or in progress)."""

    id: str
    at: dt.datetime
    name: str
    esketamine: bool

    @property
    def reference(self) -> str:
        return f"MedicationAdministration/{self.id}"


def unidentified_administrations(pool: ResourcePool) -> list[str]:
    """Administrations given whose drug cannot be read (a Medication reference that did not resolve and no name):
    they might be ketamine, so the doses of the encounter are unknown, never "none given"."""
    found = []
    for res in pool.of_type(ResourceType.MEDICATION_ADMINISTRATION):
        if res.get("status") not in _GIVEN or not pool.valid(res) or _administered_concept(pool, res):
            continue
        found.append(f"MedicationAdministration/{text(res, 'id')}")
    return found


def _administered_concept(pool: ResourcePool, res: dict[str, Any]) -> dict[str, Any]:
    concept = obj(res, "medicationCodeableConcept")
    reference = text(obj(res, "medicationReference"), "reference")
    if not concept and reference:
        target = pool.resolve(reference, res)
        concept = obj(target, "code") if target else {}
    return concept or medication_concept(res)


def ketamine_administrations(pool: ResourcePool, codesets: CodeSets | None = None) -> list[Administration]:
    """The ketamine/esketamine doses given, by time (a period's end: the last device of a dose is what counts)."""
    found = []
    for res in pool.of_type(ResourceType.MEDICATION_ADMINISTRATION):
        if res.get("status") not in _GIVEN or not pool.valid(res):
            continue
        concept = _administered_concept(pool, res)
        is_ketamine, esketamine = ketamine_concept(concept, codesets)
        if not is_ketamine:
            continue
        period = obj(res, "effectivePeriod")
        at = (parse_instant(res.get("effectiveDateTime")) or parse_instant(period.get("end"))
              or parse_instant(period.get("start")))
        if at is None:
            continue
        name = text(concept, "text") or next((text(c, "display") for c in codings(concept) if text(c, "display")),
                                             "ketamine")
        found.append(Administration(text(res, "id"), at, name, esketamine))
    return sorted(found, key=lambda a: a.at)


@dataclass(frozen=True, slots=True)
class TimedBloodPressure:
    """One blood pressure reading with its time (the session rules compare readings minutes apart)."""

    id: str
    at: dt.datetime
    systolic: float | None
    diastolic: float | None

    @property
    def reference(self) -> str:
        return f"Observation/{self.id}"


def _component_value(res: Mapping[str, Any], groups: set[str], codesets: CodeSets) -> float | None:
    for comp in arr(res, "component"):
        if codesets.observation_groups(obj(comp, "code")) & groups:
            return number_value(comp)
    return None


def timed_blood_pressures(pool: ResourcePool, codesets: CodeSets | None = None) -> list[TimedBloodPressure]:
    """Blood pressure panels and paired systolic/diastolic readings with a time, in order."""
    codesets = codesets or CodeSets.load()
    readings: dict[tuple[str, dt.datetime], dict[str, Any]] = {}
    for res in pool.of_type(ResourceType.OBSERVATION):
        groups = codesets.observation_groups(obj(res, "code"))
        if not groups & {"bp_panel", "systolic", "diastolic"} or res.get("status") not in _FINAL_OBSERVATION:
            continue
        at = parse_instant(res.get("effectiveDateTime")) or parse_instant(obj(res, "effectivePeriod").get("start"))
        if at is None or not pool.valid(res):
            continue
        if "bp_panel" in groups:
            reading = readings.setdefault((text(res, "id"), at), {"id": text(res, "id")})
            reading["systolic"] = _component_value(res, {"systolic"}, codesets)
            reading["diastolic"] = _component_value(res, {"diastolic"}, codesets)
            continue
        value = number_value(res)
        if value is None:
            continue
        half = readings.setdefault(("pair", at), {"id": text(res, "id")})
        half["systolic" if "systolic" in groups else "diastolic"] = value
    plausible = [TimedBloodPressure(r["id"], at, r.get("systolic"), r.get("diastolic"))
                 for (_, at), r in readings.items()
                 if all(plausible_mmhg(v) for v in (r.get("systolic"), r.get("diastolic")) if v is not None)
                 and (r.get("systolic") is not None or r.get("diastolic") is not None)]
    return sorted(plausible, key=lambda b: b.at)


@dataclass(frozen=True, slots=True)
class EncounterFact:
    id: str
    outpatient: bool | None  # None: the class does not say
    class_code: str


def encounter_fact(pool: ResourcePool, encounter_id: str) -> EncounterFact | None:
    res = pool.resolve(f"Encounter/{encounter_id}")
    if res is None or not pool.valid(res):
        return None
    cls = obj(res, "class")
    code = text(cls, "code")
    words = {code.lower(), text(cls, "display").lower()} - {""}
    outpatient = True if words & _OUTPATIENT_CLASSES else False if words & _INPATIENT_CLASSES else None
    return EncounterFact(encounter_id, outpatient, code)
