"""Treatment sessions as typed facts: the appointment being booked and the patient's other sessions, the ketamine
or esketamine given in an encounter, the blood pressures taken in it (with their times), and the encounter itself.

The session rules reason in minutes, so these facts keep instants (timezone-aware), unlike the order-time facts,
which reason in days.

Every record is read through :class:`SessionRecords`, which keeps only the context's patient's records (and, for
blood pressures, the context's encounter), validates each entry before reading it, and counts what it left out
(:class:`LeftOut`) so that the card can say so without quoting another patient's data.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ._json import arr, codings, obj, text
from .codesets import CodeSets
from .facts import ObservationGroup, ResourceType, SkippedEntry
from .loading import ResourcePool
from .mapping import patient_key
from .orders import ketamine_concept, medication_concept
from .values import number_value, plausible_mmhg

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
_BP_GROUPS = frozenset({ObservationGroup.BP_PANEL, ObservationGroup.SYSTOLIC, ObservationGroup.DIASTOLIC})
# v3 ActCode encounter classes, and the words EHRs put in class.code or class.display instead (compared in lower case).
_OUTPATIENT_CLASSES = {"amb", "obsenc", "hh", "vr", "ambulatory", "outpatient", "office visit", "clinic"}
_INPATIENT_CLASSES = {"imp", "acute", "nonac", "emer", "prenc", "ss", "inpatient", "emergency", "observation"}


#: The years an instant may fall in. The rules add hours and weeks to instants and convert them between zones;
#: Python's datetime ends at years 1 and 9999, so "9999-12-31T23:00Z" + 2 hours or "0001-01-01T00:00+14:00" in UTC
#: overflow. No session is booked or dose given outside these years: such a date is an invalid entry.
EARLIEST_YEAR, LATEST_YEAR = 1900, 2999
#: The longest slot ``minutesDuration`` may give (a week): longer is not a session slot but a corrupt value.
_MAX_SLOT_MINUTES = 7 * 24 * 60


class OutOfRange(ValueError):
    """A date the session rules cannot compute with (outside ``EARLIEST_YEAR``-``LATEST_YEAR``)."""


def _instant(value: Any) -> dt.datetime | None:
    """:func:`parse_instant`, raising :class:`OutOfRange` for a well-formed instant outside the years the rules
    compute with."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    # The year of the written (local) time is checked before any conversion: converting is what overflows.
    if not EARLIEST_YEAR <= parsed.year <= LATEST_YEAR:
        raise OutOfRange(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def parse_instant(value: Any) -> dt.datetime | None:
    """A FHIR dateTime or instant with a time, as an aware datetime (no zone written: read as UTC). A date alone
    is not an instant, and one outside the years the rules compute with is none either: None."""
    try:
        return _instant(value)
    except OutOfRange:
        return None


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
    if start is None or not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 < minutes <= \
            _MAX_SLOT_MINUTES:
        return None
    return start + dt.timedelta(minutes=minutes)


@dataclass(frozen=True, slots=True)
class Administration:
    """A dose of ketamine or esketamine given (MedicationAdministration, completed or in progress)."""

    id: str
    at: dt.datetime
    name: str
    esketamine: bool
    #: The encounter the dose was recorded in, when it is not the context's (``Encounter/…``); None: the context's
    #: encounter, or none recorded.
    other_encounter: str | None = None

    @property
    def reference(self) -> str:
        return f"MedicationAdministration/{self.id}"


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


def _component_value(res: Mapping[str, Any], groups: AbstractSet[str], codesets: CodeSets) -> float | None:
    for comp in arr(res, "component"):
        if codesets.observation_groups(obj(comp, "code")) & groups:
            return number_value(comp)
    return None


@dataclass(frozen=True, slots=True)
class EncounterFact:
    id: str
    outpatient: bool | None  # None: the class does not say
    class_code: str


class LeftOutReason(StrEnum):
    """Why the session services left a record out."""

    #: About another patient, or about none (a dose or reading must name its patient to count).
    OTHER_PATIENT = "other_patient"
    #: Recorded in another encounter than the one being discharged (a reading; a dose outside the monitoring
    #: window, which the rules decide).
    OTHER_ENCOUNTER = "other_encounter"
    #: Not valid FHIR, or a date the rules cannot compute with.
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class LeftOut:
    """How many records the session checks left out, by reason: counts only, so that a card can report a data
    problem without quoting another patient's record."""

    other_patient: int = 0
    other_encounter: int = 0
    invalid: int = 0

    def __add__(self, other: LeftOut) -> LeftOut:
        return LeftOut(self.other_patient + other.other_patient, self.other_encounter + other.other_encounter,
                       self.invalid + other.invalid)

    @property
    def total(self) -> int:
        return self.other_patient + self.other_encounter + self.invalid


def _reference_id(value: Any, rtype: str) -> str | None:
    """The id of a ``rtype`` reference (relative or absolute); None when there is none or it is of another type."""
    ref = text(value, "reference")
    parts = ref.rstrip("/").split("/")
    return parts[-1] if len(parts) >= 2 and parts[-2] == rtype else None


def _appointment_patients(appointment: Mapping[str, Any]) -> set[str]:
    return {pid for p in arr(appointment, "participant") if isinstance(p, dict)
            if (pid := _reference_id(obj(p, "actor"), "Patient"))}


@dataclass(slots=True)
class SessionRecords:
    """The session records of one call, read for ``patient_id`` (and ``encounter_id`` at discharge).

    Every reader keeps only the patient's records (as the order-time mapping does), validates an entry before it
    reads its status, dates and references, and counts what it leaves out; :attr:`left_out` gives the counts. A
    record is counted once, however many readers look at it.
    """

    pool: ResourcePool
    patient_id: str
    encounter_id: str | None = None
    codesets: CodeSets = field(default_factory=CodeSets.load)
    #: Why each record left out was left out, by ``Type/id`` (so that it is counted once).
    _left_out: dict[str, LeftOutReason] = field(default_factory=dict)

    @property
    def left_out(self) -> LeftOut:
        reasons = list(self._left_out.values())
        return LeftOut(*(reasons.count(r) for r in (LeftOutReason.OTHER_PATIENT, LeftOutReason.OTHER_ENCOUNTER,
                                                    LeftOutReason.INVALID)))

    def _leave_out(self, res: Mapping[str, Any], reason: LeftOutReason) -> None:
        self._left_out.setdefault(f"{res.get('resourceType')}/{res.get('id')}", reason)

    def _mine(self, res: dict[str, Any], *, subject_optional: bool = False) -> bool:
        """Whether ``res`` is the patient's: its subject (patient, or the Patient participants of an Appointment)
        names the patient. A resource whose subject is optional in FHIR (Encounter, Appointment) and names no
        patient is the context's; a dose or reading must name its patient."""
        if res.get("resourceType") == "Appointment":
            patients = _appointment_patients(res)
            owned = not patients or self.patient_id in patients
        else:
            owner = patient_key(res)
            owned = owner == self.patient_id or (owner is None and subject_optional)
        if not owned:
            self._leave_out(res, LeftOutReason.OTHER_PATIENT)
        return owned

    def _valid(self, res: dict[str, Any], pool: ResourcePool | None = None) -> bool:
        if (pool or self.pool).valid(res):
            return True
        self._leave_out(res, LeftOutReason.INVALID)
        return False

    def _time(self, res: dict[str, Any], value: Any, pool: ResourcePool | None = None) -> dt.datetime | None:
        try:
            return _instant(value)
        except OutOfRange:
            self._leave_out(res, LeftOutReason.INVALID)
            (pool or self.pool).skipped.append(SkippedEntry(
                f"{res.get('resourceType')}/{res.get('id')}", str(res.get("resourceType")),
                f"a date outside the years {EARLIEST_YEAR}-{LATEST_YEAR}"))
            raise

    def _resolve_order(self, reference: str, container: Mapping[str, Any],
                       *pools: ResourcePool) -> dict[str, Any] | None:
        """An order ``basedOn`` points to, when it is valid and the patient's (contained orders are the container's,
        so they need no subject of their own; any they state must be the patient's)."""
        for pool in pools:
            target = pool.resolve(reference, container)
            if target is None:
                continue
            contained = reference.startswith("#")
            if not self._mine(target, subject_optional=contained):
                return None
            return target if contained or self._valid(target, pool) else None
        return None

    def appointment(self, res: dict[str, Any], session_codes: frozenset[str], pool: ResourcePool | None = None,
                    ) -> SessionAppointment | None:
        """One appointment, read when it is the patient's, valid and its times computable; else None (counted).
        ``pool``: where it came from, when not the call's pool (the appointments being booked); its ``basedOn``
        orders resolve there first, then in the call's pool."""
        home = pool or self.pool
        if not self._mine(res) or not self._valid(res, home):
            return None
        try:
            for key in ("start", "end"):
                self._time(res, res.get(key), home)
        except OutOfRange:
            return None
        pools = (home, self.pool) if pool is not None else (self.pool,)
        return session_appointment(res, session_codes, lambda ref, container: self._resolve_order(
            ref, container, *pools), self.codesets)

    def booked_sessions(self, session_codes: frozenset[str], exclude: Iterable[str] = ()) -> list[SessionAppointment]:
        """The patient's other ketamine/esketamine sessions on record (not cancelled), by start."""
        skip = set(exclude)
        found = []
        for res in self.pool.of_type(ResourceType.APPOINTMENT):
            if res.get("id") in skip:
                continue
            appt = self.appointment(res, session_codes)
            if appt is not None and appt.status in _ACTIVE_APPOINTMENT and appt.is_session and appt.start is not None:
                found.append(appt)
        return sorted(found, key=lambda a: a.start or dt.datetime.min.replace(tzinfo=dt.UTC))

    def _given(self) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
        """The patient's valid administrations given, with the drug concept each names (empty: unreadable)."""
        for res in self.pool.of_type(ResourceType.MEDICATION_ADMINISTRATION):
            if not self._mine(res) or not self._valid(res) or text(res, "status") not in _GIVEN:
                continue
            yield res, self._administered_concept(res)

    def _administered_concept(self, res: dict[str, Any]) -> dict[str, Any]:
        concept = obj(res, "medicationCodeableConcept")
        reference = text(obj(res, "medicationReference"), "reference")
        if not concept and reference:
            target = self.pool.resolve(reference, res)
            concept = obj(target, "code") if target else {}
        return concept or medication_concept(res)

    def unidentified_administrations(self) -> list[str]:
        """Administrations given whose drug cannot be read (a Medication reference that did not resolve and no
        name): they might be ketamine, so the doses of the encounter are unknown, never "none given"."""
        return [f"MedicationAdministration/{text(res, 'id')}" for res, concept in self._given() if not concept]

    def ketamine_administrations(self) -> list[Administration]:
        """The patient's ketamine/esketamine doses given, by time (a period's end: the last device of a dose is
        what counts). A dose recorded in another encounter is kept with that encounter named: whether it still
        counts (within the monitoring window) is the rules' decision."""
        found = []
        for res, concept in self._given():
            is_ketamine, esketamine = ketamine_concept(concept, self.codesets)
            if not is_ketamine:
                continue
            period = obj(res, "effectivePeriod")
            try:
                at = (self._time(res, res.get("effectiveDateTime")) or self._time(res, period.get("end"))
                      or self._time(res, period.get("start")))
            except OutOfRange:
                continue
            if at is None:
                continue
            name = text(concept, "text") or next((text(c, "display") for c in codings(concept) if text(c, "display")),
                                                 "ketamine")
            encounter = _reference_id(obj(res, "context"), "Encounter")
            other = f"Encounter/{encounter}" if encounter and self.encounter_id and encounter != self.encounter_id \
                else None
            found.append(Administration(text(res, "id"), at, name, esketamine, other))
        return sorted(found, key=lambda a: a.at)

    def timed_blood_pressures(self) -> list[TimedBloodPressure]:
        """The patient's blood pressure panels and paired systolic/diastolic readings with a time, in order; at
        discharge, only the encounter's (one of another encounter is left out: its time says nothing of this
        session)."""
        codesets = self.codesets
        readings: dict[tuple[str, dt.datetime], dict[str, Any]] = {}
        for res in self.pool.of_type(ResourceType.OBSERVATION):
            groups = codesets.observation_groups(obj(res, "code"))
            if not groups & _BP_GROUPS or (at := self._bp_time(res)) is None:
                continue
            if ObservationGroup.BP_PANEL in groups:
                reading = readings.setdefault((text(res, "id"), at), {"id": text(res, "id")})
                reading["systolic"] = _component_value(res, {ObservationGroup.SYSTOLIC}, codesets)
                reading["diastolic"] = _component_value(res, {ObservationGroup.DIASTOLIC}, codesets)
            elif (value := number_value(res)) is not None:
                half = readings.setdefault(("pair", at), {"id": text(res, "id")})
                half["systolic" if ObservationGroup.SYSTOLIC in groups else "diastolic"] = value
        plausible = [TimedBloodPressure(r["id"], at, r.get("systolic"), r.get("diastolic"))
                     for (_, at), r in readings.items()
                     if all(plausible_mmhg(v) for v in (r.get("systolic"), r.get("diastolic")) if v is not None)
                     and (r.get("systolic") is not None or r.get("diastolic") is not None)]
        return sorted(plausible, key=lambda b: b.at)

    def _bp_time(self, res: dict[str, Any]) -> dt.datetime | None:
        """When a blood pressure of the patient's was taken, if it is valid, final, of this encounter (at discharge;
        one of another is left out) and has a time."""
        if not self._mine(res) or not self._valid(res) or text(res, "status") not in _FINAL_OBSERVATION:
            return None
        encounter = _reference_id(obj(res, "encounter"), "Encounter")
        if self.encounter_id and encounter and encounter != self.encounter_id:
            self._leave_out(res, LeftOutReason.OTHER_ENCOUNTER)
            return None
        try:
            return self._time(res, res.get("effectiveDateTime")) or self._time(
                res, obj(res, "effectivePeriod").get("start"))
        except OutOfRange:
            return None

    def encounter(self) -> EncounterFact | None:
        """The context's encounter, when it is valid and the patient's (or names no patient)."""
        if self.encounter_id is None:
            return None
        res = self.pool.resolve(f"Encounter/{self.encounter_id}")
        if res is None or not self._mine(res, subject_optional=True) or not self._valid(res):
            return None
        cls = obj(res, "class")
        code = text(cls, "code")
        words = {code.lower(), text(cls, "display").lower()} - {""}
        outpatient = True if words & _OUTPATIENT_CLASSES else False if words & _INPATIENT_CLASSES else None
        return EncounterFact(self.encounter_id, outpatient, code)

    def count_other_patients(self, types: Iterable[ResourceType] | None = None) -> None:
        """Count the records in the pool (of ``types``; None: all) that are about another patient: the readers count
        only those they read, this covers the rest (another patient's Encounter, a Patient beside the context's)."""
        wanted = None if types is None else {t.value for t in types}
        for res in self.pool.resources:
            rtype = res.get("resourceType")
            if rtype == ResourceType.MEDICATION or (wanted is not None and rtype not in wanted):
                continue
            if rtype == ResourceType.PATIENT:
                if res.get("id") != self.patient_id:
                    self._leave_out(res, LeftOutReason.OTHER_PATIENT)
                continue
            owner = (_appointment_patients(res) if rtype == ResourceType.APPOINTMENT
                     else {patient_key(res)} - {None})
            if owner and self.patient_id not in owner:
                self._leave_out(res, LeftOutReason.OTHER_PATIENT)
