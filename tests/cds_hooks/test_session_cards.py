"""What a clinician reads on each session card, whole: the summary, every line of the detail, the sources it links,
the indicator, the source label and the reasons offered for going on. A card is read, not parsed, so its words are
the specification; the numbers in them come from the policy (the 2 hours, the 135-minute slot) and the times and
readings from the finding, in the site's time zone. Expected text is written here from the label's and REMS's rules
(shared/reference), never taken from the cards' own output."""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
import uuid
from pathlib import Path

import pytest

from cds_hooks.models import Card, CardKind, Hook, Indicator
from cds_hooks.session_cards import blind_card, session_cards
from eligibility import Citation, SessionCheck, SessionFinding, Urgency, cited_source, load_policy
from fhir_mapping import (
    Administration,
    BloodPressureFact,
    GapReason,
    LeftOut,
    SessionAppointment,
    TimedBloodPressure,
)

POLICY = load_policy("default")
T = POLICY.thresholds
SOURCES = tomllib.loads((Path(__file__).resolve().parents[2] / "eligibility" / "policies" / "sources.toml")
                        .read_text(encoding="utf-8"))
#: What each source is called in a card's "Sources:" line.
SOURCE_NAMES = {"S1": "label", "S3": "REMS", "S4": "REMS program", "S8": "EU SmPC", "S62": "US dosing"}
OVERRIDE_SYSTEM = "https://ketamine-cds.org/CodeSystem/override-reason"
DOSE_AT = dt.datetime(2026, 11, 1, 9, 40, tzinfo=dt.UTC)
DOSE = Administration("dose-1", DOSE_AT, "Spravato 56 mg", esketamine=True)
TWO_HOURS = POLICY.cite("session_monitoring_minutes")
BP_RULE = POLICY.cite("session_bp_systolic_above")
SCHEDULE = POLICY.cite("session_max_per_week_induction")
AFTER_CARE = POLICY.cite("rems_form_days")
REQUIRED = T.session_dose_minutes + T.session_monitoring_minutes


def sources_line(*ids: str) -> str:
    return "Sources: " + "; ".join(f"[{SOURCE_NAMES[i]}: {SOURCES[i]['label']}]({SOURCES[i]['url']})" for i in ids)


def detail(*paragraphs: str, sources: tuple[str, ...]) -> str:
    """A card's detail: its paragraphs, then an empty paragraph, then the sources it links."""
    return "\n\n".join(paragraphs) + "\n\n\n\n" + sources_line(*sources)


def session(sid: str, day: dt.date) -> SessionAppointment:
    start = dt.datetime.combine(day, dt.time(9), dt.UTC)
    return SessionAppointment(sid, start, start + dt.timedelta(minutes=150), "booked", True, True, True,
                              "appointment code")


DAY = dt.date(2026, 11, 3)
TOO_EARLY = SessionFinding(SessionCheck.DISCHARGE_TOO_EARLY, Urgency.CRITICAL, TWO_HOURS, minutes=50.4,
                           required_minutes=T.session_monitoring_minutes, dose=DOSE,
                           earliest=DOSE_AT + dt.timedelta(minutes=T.session_monitoring_minutes))
EARLIEST = (DOSE_AT + dt.timedelta(minutes=T.session_monitoring_minutes)).strftime("%H:%M")

#: One finding of each check, what its card says (summary; detail), its kind, indicator and override codes.
CASES: list[tuple[SessionFinding, str, str, CardKind, Indicator, tuple[str, ...]]] = [
    (SessionFinding(SessionCheck.SLOT_TOO_SHORT, Urgency.WARNING, TWO_HOURS, minutes=60.0, required_minutes=REQUIRED),
     f"Session slot 60 min: needs {REQUIRED:g} min (dose + 2 h monitoring)",
     detail("The slot is **60 minutes**. Each session needs the dose and then **at least 2 hours of monitoring**, "
            "until sedation, dissociation and respiratory depression have resolved "
            f"({REQUIRED:g} minutes in all under this policy). Book a longer slot.", sources=("S1", "S3")),
     CardKind.SESSION_SLOT_TOO_SHORT, Indicator.WARNING, ("chart-data-incorrect", "specialist-decision")),
    (SessionFinding(SessionCheck.SAME_DAY, Urgency.WARNING, SCHEDULE, sessions=(session("a", DAY), session("b", DAY)),
                    dates=(DAY,), limit=1),
     "Two sessions on 2026-11-03: one dose a day",
     detail("Another session or a dose already given is on record for **2026-11-03**.",
            "The dosing schedule gives one dose per session: twice weekly in weeks 1-4, weekly in weeks 5-8, then "
            "weekly or every 2 weeks.", sources=("S8", "S62")),
     CardKind.SESSION_TOO_MANY, Indicator.WARNING, ("chart-data-incorrect", "specialist-decision")),
    (SessionFinding(SessionCheck.BENEFIT_NOT_ASSESSED, Urgency.WARNING, POLICY.cite("session_induction_weeks"),
                    dates=(dt.date(2026, 11, 29),)),
     "Maintenance session: benefit at the end of induction not assessed",
     detail("Induction ended on **2026-11-29** and no current PHQ-9 shows the response since the first dose.",
            "The label asks that the evidence of therapeutic benefit be evaluated at the end of induction to "
            "determine the need for continued treatment: a PHQ-9 at this visit documents it.", sources=("S62",)),
     CardKind.SESSION_BENEFIT_NOT_ASSESSED, Indicator.WARNING, ("workup-done-elsewhere", "specialist-decision")),
    (SessionFinding(SessionCheck.TOO_MANY_SESSIONS, Urgency.WARNING, SCHEDULE,
                    sessions=(session("a", dt.date(2026, 11, 2)), session("b", dt.date(2026, 11, 4)),
                              session("new", dt.date(2026, 11, 6))),
                    limit=T.session_max_per_week_induction,
                    dates=(dt.date(2026, 11, 6), dt.date(2026, 11, 2), dt.date(2026, 11, 4))),
     f"3 sessions in 7 days: the schedule allows {T.session_max_per_week_induction} during induction (weeks 1-4)",
     detail("Sessions in the same 7 days: 2026-11-02, 2026-11-04, 2026-11-06.",
            f"The dosing schedule allows at most **{T.session_max_per_week_induction}** session(s) in any 7 days "
            "during induction (weeks 1-4): twice weekly in weeks 1-4, weekly in weeks 5-8, then weekly or every 2 "
            "weeks.", sources=("S8",)),
     CardKind.SESSION_TOO_MANY, Indicator.WARNING, ("specialist-decision", "chart-data-incorrect")),
    (SessionFinding(SessionCheck.BP_ELEVATED_BEFORE, Urgency.WARNING, BP_RULE,
                    reading=BloodPressureFact("bp-1", dt.date(2026, 10, 30), 152, 94)),
     "BP 152/94 on 30 Oct: check BP before dosing; consider delaying",
     detail("The latest blood pressure in the last 7 days is **152/94 mmHg** on 30 Oct.",
            "The label: assess blood pressure before each dose; above 140/90 mmHg (a general guide), weigh delaying "
            "the session against its benefit.", sources=("S1",)),
     CardKind.SESSION_BP_ELEVATED, Indicator.WARNING,
     ("reading-not-in-chart", "benefit-outweighs-risk", "specialist-decision")),
    (SessionFinding(SessionCheck.ARRANGE_TRANSPORT, Urgency.INFO, TWO_HOURS),
     "No driving until the next day after restful sleep: arrange transport",
     detail("No transport is noted on the appointment. After each session the patient must not drive or operate "
            "machinery until the next day after a restful sleep: arrange a ride home.", sources=("S1",)),
     CardKind.SESSION_TRANSPORT, Indicator.INFO, ()),
    (TOO_EARLY,
     f"Esketamine given 09:40: discharge not before {EARLIEST} (2 h monitoring)",
     detail("The last dose (**Spravato 56 mg**, `MedicationAdministration/dose-1`) was given at **09:40** "
            "(50 minutes ago).",
            "Monitor for at least 2 hours after the dose, until sedation, dissociation and respiratory depression "
            f"have resolved and the patient is clinically stable: **earliest discharge {EARLIEST}**.",
            sources=("S1", "S3")),
     CardKind.DISCHARGE_TOO_EARLY, Indicator.CRITICAL, ("assessed-stable", "chart-data-incorrect",
                                                        "specialist-decision")),
    (SessionFinding(SessionCheck.NO_BP_AFTER_DOSE, Urgency.WARNING, BP_RULE, dose=DOSE),
     "No blood pressure after the dose: recheck before discharge",
     detail("No blood pressure is recorded in this encounter after the dose (dose at 09:40).",
            "The label: recheck blood pressure about 40 minutes after the dose and then as clinically warranted "
            "until values decline.", sources=("S1",)),
     CardKind.DISCHARGE_NO_BP_AFTER_DOSE, Indicator.WARNING, ("reading-not-in-chart", "assessed-stable")),
    (SessionFinding(SessionCheck.BP_NOT_DECREASING, Urgency.WARNING, BP_RULE, dose=DOSE,
                    reading=TimedBloodPressure("bp-2", DOSE_AT + dt.timedelta(minutes=60), 158, 96),
                    previous=TimedBloodPressure("bp-1", DOSE_AT + dt.timedelta(minutes=40), 156, 98)),
     "BP 158/96 at 10:40 not yet decreasing: reassess before discharge",
     detail("The latest reading after the dose is **158/96 mmHg at 10:40**, after 156/98 at 10:20: above 140/90 "
            "mmHg and not lower than the one before.",
            "The label: keep checking blood pressure until values decline; if it stays high, get help promptly; "
            "symptoms of hypertensive crisis or encephalopathy need emergency care.", sources=("S1",)),
     CardKind.DISCHARGE_BP_NOT_DECREASING, Indicator.WARNING,
     ("reading-not-in-chart", "assessed-stable", "specialist-decision")),
    (SessionFinding(SessionCheck.OUTPATIENT_AFTERCARE, Urgency.INFO, AFTER_CARE, outpatient=True),
     "Outpatient session: REMS monitoring form within 7 days; no driving until the next day",
     detail("- Complete and submit the **REMS Patient Monitoring Form** for this session within 7 days (outpatient "
            "settings; inpatient settings do not need it).\n"
            "- The patient must not drive until the next day after a restful sleep.", sources=("S3", "S4", "S1")),
     CardKind.DISCHARGE_AFTERCARE, Indicator.INFO, ()),
    (SessionFinding(SessionCheck.RECORDS_LEFT_OUT, Urgency.WARNING, TWO_HOURS,
                    left_out=LeftOut(other_patient=2, other_encounter=1)),
     "3 records left out of the session checks: check the chart's data",
     detail("Left out: 2 records not about this patient; 1 record of another encounter. They were not used for "
            "these checks and are not quoted here.",
            "Records of another patient or encounter in this patient's data point to a charting or interface "
            "error: check the doses and blood pressures in the chart before relying on these cards.",
            sources=("S1",)),
     CardKind.SESSION_RECORDS_LEFT_OUT, Indicator.WARNING, ("chart-data-incorrect", "assessed-stable")),
    (SessionFinding(SessionCheck.CHECKS_NOT_MADE, Urgency.WARNING, TWO_HOURS,
                    unknown=("appointments", "blood_pressure")),
     "Session checks could not be made: data could not be fetched",
     detail("Could not obtain: the patient's other appointments, recent blood pressures. The checks that need them "
            "were **not made** (unknown, not passed): check them by hand before proceeding.",
            sources=("S1", "S3")),
     CardKind.SESSION_CHECKS_NOT_MADE, Indicator.WARNING, ("assessed-stable", "specialist-decision")),
]


def test_every_check_has_a_card_specified_here() -> None:
    assert {case[0].check for case in CASES} == set(SessionCheck)


@pytest.mark.parametrize(("finding", "summary", "text", "kind", "indicator", "overrides"), CASES,
                         ids=[case[0].check.value for case in CASES])
def test_each_finding_s_card_says_what_to_do_with_the_time_or_reading_that_decides_it(
        finding: SessionFinding, summary: str, text: str, kind: CardKind, indicator: Indicator,
        overrides: tuple[str, ...]) -> None:
    (card,) = session_cards([finding], "Esketamine", T)
    assert (card.summary, card.detail) == (summary, text)
    assert (card.kind, card.indicator) == (kind, indicator)
    assert [(c.system, c.code) for c in card.overrideReasons or []] == [(OVERRIDE_SYSTEM, c) for c in overrides]
    if not overrides:
        assert card.overrideReasons is None  # a reminder has nothing to override
    # The card's source is the first primary source of the threshold's citation.
    first = next(s for s in finding.citation.sources if s.primary)
    assert (card.source.label, card.source.url) == (first.label, first.url)


# -- the words that depend on the finding -----------------------------------------------------------------------

def test_times_are_shown_in_the_site_s_time_zone_when_one_is_configured() -> None:
    (card,) = session_cards([TOO_EARLY], "Ketamine", T, dt.timezone(dt.timedelta(hours=2)))
    assert card.summary == "Ketamine given 11:40: discharge not before 13:40 (2 h monitoring)"
    assert card.detail is not None
    assert "given at **11:40** (50 minutes ago)" in card.detail and "**earliest discharge 13:40**" in card.detail


def test_without_a_site_time_zone_times_keep_the_offset_the_ehr_recorded() -> None:
    plus_one = dt.timezone(dt.timedelta(hours=1))
    dose = Administration("dose-1", DOSE_AT.astimezone(plus_one), "Spravato 56 mg", esketamine=True)
    finding = SessionFinding(SessionCheck.NO_BP_AFTER_DOSE, Urgency.WARNING, BP_RULE, dose=dose)
    (card,) = session_cards([finding], "Esketamine", T)
    assert card.detail is not None and "after the dose (dose at 10:40)." in card.detail
    (card,) = session_cards([finding], "Esketamine", T, dt.UTC)
    assert card.detail is not None and "after the dose (dose at 09:40)." in card.detail


def test_a_dose_charted_in_another_encounter_is_named_with_that_encounter() -> None:
    dose = Administration("dose-9", DOSE_AT, "Spravato 56 mg", esketamine=True, other_encounter="Encounter/enc-2")
    (card,) = session_cards([SessionFinding(SessionCheck.DISCHARGE_TOO_EARLY, Urgency.CRITICAL, TWO_HOURS,
                                            minutes=10.0, dose=dose, earliest=TOO_EARLY.earliest)], "Esketamine", T)
    assert card.detail is not None and card.detail.startswith(
        "The last dose (**Spravato 56 mg**, `MedicationAdministration/dose-9`, recorded in another encounter "
        "(`Encounter/enc-2`)) was given at **09:40** (10 minutes ago).")


def test_chart_text_on_a_card_is_literal_markdown() -> None:
    dose = Administration("x`y", DOSE_AT, "[Spravato](https://evil.test) *56*", esketamine=True,
                          other_encounter="Encounter/`e`")
    (card,) = session_cards([SessionFinding(SessionCheck.DISCHARGE_TOO_EARLY, Urgency.CRITICAL, TWO_HOURS,
                                            minutes=1.0, dose=dose, earliest=TOO_EARLY.earliest)], "Esketamine", T)
    assert card.detail is not None and card.detail.startswith(
        r"The last dose (**\[Spravato\]\(`https://evil.test)` \*56\***, `MedicationAdministration/xy`, "
        "recorded in another encounter (`Encounter/e`)) was given")


@pytest.mark.parametrize(("limit", "phase"), [(2, "during induction (weeks 1-4)"), (1, "after induction")])
def test_too_many_sessions_names_the_phase_by_its_weekly_limit(limit: int, phase: str) -> None:
    days = (dt.date(2026, 12, 1), dt.date(2026, 12, 3))
    finding = SessionFinding(SessionCheck.TOO_MANY_SESSIONS, Urgency.WARNING, SCHEDULE, limit=limit,
                             sessions=tuple(session(f"s{i}", d) for i, d in enumerate(days)), dates=days)
    (card,) = session_cards([finding], "Esketamine", T)
    assert card.summary == f"2 sessions in 7 days: the schedule allows {limit} {phase}"
    assert card.detail is not None and card.detail.startswith(
        "Sessions in the same 7 days: 2026-12-01, 2026-12-03.\n\n"
        f"The dosing schedule allows at most **{limit}** session(s) in any 7 days {phase}: ")


def test_too_many_sessions_counts_the_sessions_when_no_days_are_given_and_lists_each_day_once() -> None:
    # A dose given on a day with no session is a day of the week counted; the sessions' own days are listed too.
    same = dt.date(2026, 12, 1)
    finding = SessionFinding(SessionCheck.TOO_MANY_SESSIONS, Urgency.WARNING, SCHEDULE, limit=1,
                             sessions=(session("a", same), session("b", dt.date(2026, 12, 2))))
    (card,) = session_cards([finding], "Esketamine", T)
    assert card.summary == "2 sessions in 7 days: the schedule allows 1 after induction"
    assert card.detail is not None and card.detail.startswith("Sessions in the same 7 days: 2026-12-01, 2026-12-02.")
    undated = SessionAppointment("u", None, None, "proposed", True, True, True, "appointment code")
    finding = SessionFinding(SessionCheck.TOO_MANY_SESSIONS, Urgency.WARNING, SCHEDULE, limit=1,
                             sessions=(undated,), dates=(same, dt.date(2026, 12, 4)))
    (card,) = session_cards([finding], "Esketamine", T)
    assert card.detail is not None and card.detail.startswith("Sessions in the same 7 days: 2026-12-01, 2026-12-04.")


@pytest.mark.parametrize(("reading", "summary", "line"), [
    (BloodPressureFact("bp", dt.date(2026, 11, 2), 145.5, None), "BP 145.5/? on 2 Nov",
     "**145.5/? mmHg** on 2 Nov."),
    (BloodPressureFact("bp", dt.date(2026, 9, 30), None, 96), "BP ?/96 on 30 Sep", "**?/96 mmHg** on 30 Sep."),
    (None, "BP ?/?", "**?/? mmHg**."),
])
def test_a_reading_without_a_value_shows_a_question_mark_for_it(reading: BloodPressureFact | None, summary: str,
                                                                line: str) -> None:
    (card,) = session_cards([SessionFinding(SessionCheck.BP_ELEVATED_BEFORE, Urgency.WARNING, BP_RULE,
                                            reading=reading)], "Esketamine", T)
    assert card.summary == f"{summary}: check BP before dosing; consider delaying"
    assert card.detail is not None and card.detail.startswith(
        f"The latest blood pressure in the last 7 days is {line}\n\n")


def test_a_rising_reading_with_nothing_before_it_is_quoted_alone() -> None:
    reading = TimedBloodPressure("bp-1", DOSE_AT + dt.timedelta(minutes=40), 150, 92)
    (card,) = session_cards([SessionFinding(SessionCheck.BP_NOT_DECREASING, Urgency.WARNING, BP_RULE, dose=DOSE,
                                            reading=reading)], "Esketamine", T)
    assert card.detail is not None and card.detail.startswith(
        "The latest reading after the dose is **150/92 mmHg at 10:20**: above 140/90 mmHg and not lower than the "
        "one before.\n\n")


def test_no_reading_after_a_dose_without_its_time_says_so_without_a_time() -> None:
    (card,) = session_cards([SessionFinding(SessionCheck.NO_BP_AFTER_DOSE, Urgency.WARNING, BP_RULE)], "Esketamine", T)
    assert card.detail is not None and card.detail.startswith(
        "No blood pressure is recorded in this encounter after the dose.\n\n")


@pytest.mark.parametrize("outpatient", [None, False])
def test_aftercare_for_an_encounter_not_known_to_be_outpatient_is_conditional(outpatient: bool | None) -> None:
    (card,) = session_cards([SessionFinding(SessionCheck.OUTPATIENT_AFTERCARE, Urgency.INFO, AFTER_CARE,
                                            outpatient=outpatient)], "Esketamine", T)
    assert card.summary == "If outpatient: REMS monitoring form within 7 days; no driving until the next day"


@pytest.mark.parametrize(("left_out", "summary", "words"), [
    (LeftOut(invalid=1), "1 record left out", "1 record invalid (not valid FHIR, or a date that cannot be right)"),
    (LeftOut(other_encounter=2), "2 records left out", "2 records of another encounter"),
    (LeftOut(other_patient=1, invalid=3), "4 records left out",
     "1 record not about this patient; 3 records invalid (not valid FHIR, or a date that cannot be right)"),
])
def test_records_left_out_are_counted_by_reason_never_quoted(left_out: LeftOut, summary: str, words: str) -> None:
    (card,) = session_cards([SessionFinding(SessionCheck.RECORDS_LEFT_OUT, Urgency.WARNING, TWO_HOURS,
                                            left_out=left_out)], "Ketamine", T)
    assert card.summary == f"{summary} of the session checks: check the chart's data"
    assert card.detail is not None and card.detail.startswith(f"Left out: {words}. They were not used")


def test_checks_not_made_at_discharge_name_what_could_not_be_obtained() -> None:
    finding = SessionFinding(SessionCheck.CHECKS_NOT_MADE, Urgency.WARNING, TWO_HOURS,
                             unknown=("administrations", "session_blood_pressure", "encounter"))
    (card,) = session_cards([finding], "Esketamine", T)
    assert card.detail is not None and card.detail.startswith(
        "Could not obtain: the doses given in this encounter, the blood pressures taken in this encounter, the "
        "encounter (inpatient or outpatient). The checks")


def test_a_data_domain_without_words_of_its_own_is_named_by_its_code() -> None:
    finding = SessionFinding(SessionCheck.CHECKS_NOT_MADE, Urgency.WARNING, TWO_HOURS, unknown=("conditions",))
    (card,) = session_cards([finding], "Esketamine", T)
    assert card.detail is not None and card.detail.startswith("Could not obtain: conditions. The checks")


# -- the cards together, and the basis of a threshold ---------------------------------------------------------------

def test_cards_come_critical_first_then_warnings_then_reminders_each_in_the_order_found() -> None:
    transport = SessionFinding(SessionCheck.ARRANGE_TRANSPORT, Urgency.INFO, TWO_HOURS)
    no_bp = SessionFinding(SessionCheck.NO_BP_AFTER_DOSE, Urgency.WARNING, BP_RULE, dose=DOSE)
    left = SessionFinding(SessionCheck.RECORDS_LEFT_OUT, Urgency.WARNING, TWO_HOURS, left_out=LeftOut(invalid=1))
    cards = session_cards([transport, no_bp, TOO_EARLY, left], "Esketamine", T)
    assert [c.kind for c in cards] == [CardKind.DISCHARGE_TOO_EARLY, CardKind.DISCHARGE_NO_BP_AFTER_DOSE,
                                       CardKind.SESSION_RECORDS_LEFT_OUT, CardKind.SESSION_TRANSPORT]
    assert len({c.uuid for c in cards}) == 4


def test_no_finding_no_card() -> None:
    assert session_cards([], "Esketamine", T) == []


LOCAL = Citation((cited_source("local"),), verified=False, note="a clinic's own choice")
UNCONFIRMED = Citation((cited_source("S1"),), verified=False, note="value not confirmed")


@pytest.mark.parametrize(("finding", "summary", "text", "kind", "indicator", "overrides"), CASES,
                         ids=[case[0].check.value for case in CASES])
def test_a_threshold_with_no_primary_source_says_so_and_the_card_cites_what_its_words_rest_on(
        finding: SessionFinding, summary: str, text: str, kind: CardKind, indicator: Indicator,
        overrides: tuple[str, ...]) -> None:
    (card,) = session_cards([dataclasses.replace(finding, citation=LOCAL)], "Esketamine", T)
    paragraphs = text.split("\n\n")
    sources = paragraphs[-1]
    assert card.detail == "\n\n".join([*paragraphs[:-2], "Local clinic policy; no primary source.", "", sources])
    first_linked = sources.removeprefix("Sources: [").split("]", 1)[0].split(": ", 1)[1]
    assert card.source.label == first_linked
    assert card.source.url == next(s["url"] for s in SOURCES.values() if s["label"] == first_linked)


def test_a_threshold_whose_value_the_sources_do_not_confirm_says_so_in_the_detail() -> None:
    finding, _, text, *_ = CASES[0]
    (card,) = session_cards([dataclasses.replace(finding, citation=UNCONFIRMED)], "Esketamine", T)
    paragraphs = text.split("\n\n")
    assert card.detail == "\n\n".join(
        [*paragraphs[:-2], "The exact value is not confirmed by the sources (see the policy file).", "",
         paragraphs[-1]])
    assert card.source.label == SOURCES["S1"]["label"]


# -- the one card when the data could not be had --------------------------------------------------------------------

def test_a_discharge_without_its_data_warns_that_the_2_hour_and_bp_checks_were_not_made() -> None:
    card = blind_card(Hook.ENCOUNTER_DISCHARGE, [GapReason.NETWORK_ERROR], TWO_HOURS, T)
    assert card.summary == "Discharge checks not made: FHIR server unreachable — check manually"
    assert card.detail == (
        "The 2-hour observation and blood-pressure checks could not be made: **FHIR server unreachable** — check "
        "manually: the time of the last dose (at least 2 hours of monitoring before discharge), blood pressure after "
        "the dose until it declines, and the REMS monitoring form for an outpatient session.\n\n"
        "These checks were **not made** (unknown, not passed).\n\n" + sources_line("S1", "S3"))
    assert (card.kind, card.indicator) == (CardKind.SESSION_CHECKS_NOT_MADE, Indicator.WARNING)
    assert (card.source.label, card.source.url) == (SOURCES["S1"]["label"], SOURCES["S1"]["url"])
    assert [(c.system, c.code) for c in card.overrideReasons or []] == [
        (OVERRIDE_SYSTEM, "assessed-stable"), (OVERRIDE_SYSTEM, "specialist-decision")]


BOOKING_CHECKS = ("the slot (the dose and 2 hours of monitoring), the dosing schedule, the blood pressure before "
                  "dosing, transport home, and the contraindications")


@pytest.mark.parametrize("hook", [Hook.APPOINTMENT_BOOK, Hook.ORDER_SIGN])
def test_a_booking_without_its_data_warns_that_the_session_checks_and_assessment_were_not_made(hook: Hook) -> None:
    # Any other hook gets the booking's words: the widest list of checks not made.
    card = blind_card(hook, [GapReason.UNAUTHORIZED], LOCAL, T)
    assert card.summary == "Session checks not made: access to the FHIR server refused — check manually"
    assert card.detail is not None and card.detail.startswith(
        "The session checks and the patient's assessment could not be made: **access to the FHIR server refused** "
        f"— check manually: {BOOKING_CHECKS}.\n\n")
    # With no primary source in the citation, the card cites the label its checks rest on.
    assert card.source.label == SOURCES["S1"]["label"]


@pytest.mark.parametrize(("reasons", "words"), [
    ([GapReason.TIMEOUT], "FHIR server did not answer in time"),
    ([GapReason.BUDGET_EXCEEDED], "FHIR server did not answer in time"),
    ([GapReason.FORBIDDEN], "access to the FHIR server refused"),
    ([GapReason.SERVER_ERROR], "FHIR server error"),
    ([GapReason.MALFORMED], "FHIR server's answer unreadable"),
    ([GapReason.REJECTED], "FHIR server refused the search"),
    ([GapReason.TOO_LARGE], "FHIR server's answer too large"),
    # The same words once, in the order the reasons came.
    ([GapReason.TIMEOUT, GapReason.NETWORK_ERROR, GapReason.BUDGET_EXCEEDED],
     "FHIR server did not answer in time, FHIR server unreachable"),
    ([GapReason.NOT_FOUND], "data could not be fetched"),
    ([], "data could not be fetched"),
])
def test_the_blind_card_says_why_the_data_could_not_be_had(reasons: list[GapReason], words: str) -> None:
    card = blind_card(Hook.APPOINTMENT_BOOK, reasons, TWO_HOURS, T)
    first = words.split(", ")[0]
    assert card.summary == f"Session checks not made: {first} — check manually"
    assert card.detail is not None and card.detail.startswith(
        f"The session checks and the patient's assessment could not be made: **{words}** — check manually: ")


def test_each_blind_card_is_its_own_card() -> None:
    first, second = (blind_card(Hook.APPOINTMENT_BOOK, [GapReason.TIMEOUT], TWO_HOURS, T) for _ in range(2))
    assert uuid.UUID(first.uuid) != uuid.UUID(second.uuid)


def test_the_blind_card_cites_the_first_primary_source_of_its_threshold() -> None:
    card = blind_card(Hook.ENCOUNTER_DISCHARGE, [GapReason.TIMEOUT], AFTER_CARE, T)
    assert (card.source.label, card.source.url) == (SOURCES["S3"]["label"], SOURCES["S3"]["url"])


def test_reading_times_of_a_rising_bp_are_shown_in_the_site_s_time_zone() -> None:
    finding = next(case[0] for case in CASES if case[0].check is SessionCheck.BP_NOT_DECREASING)
    (card,) = session_cards([finding], "Esketamine", T, dt.timezone(dt.timedelta(hours=-5)))
    assert card.summary == "BP 158/96 at 05:40 not yet decreasing: reassess before discharge"
    assert card.detail is not None and card.detail.startswith(
        "The latest reading after the dose is **158/96 mmHg at 05:40**, after 156/98 at 05:20: ")


@pytest.mark.parametrize(("check", "summary", "line"), [
    (SessionCheck.SAME_DAY, "Two sessions on the booked day: one dose a day",
     "Another session or a dose already given is on record for **the booked day**."),
    (SessionCheck.BENEFIT_NOT_ASSESSED, "Maintenance session: benefit at the end of induction not assessed",
     "Induction ended on **the end of induction** and no current PHQ-9 shows the response since the first dose."),
])
def test_a_schedule_finding_without_its_day_names_the_day_in_words(check: SessionCheck, summary: str,
                                                                   line: str) -> None:
    (card,) = session_cards([SessionFinding(check, Urgency.WARNING, SCHEDULE)], "Esketamine", T)
    assert card.summary == summary
    assert card.detail is not None and card.detail.startswith(line + "\n\n")


# -- every number a card states is the policy's ---------------------------------------------------------------------

#: A site's policy with other numbers than the default's: 90 minutes of monitoring, a recheck at 30 minutes, 150/95,
#: 3 days of blood pressures, the REMS form within 5 days.
SITE = dataclasses.replace(T, session_monitoring_minutes=90, session_bp_recheck_minutes=30,
                           session_bp_systolic_above=150, session_bp_diastolic_above=95, session_bp_days=3,
                           rems_form_days=5)


def _words(card: Card) -> str:
    return f"{card.summary}\n{card.detail}"


@pytest.mark.parametrize(("finding", "says"), [
    (SessionFinding(SessionCheck.SLOT_TOO_SHORT, Urgency.CRITICAL, TWO_HOURS, minutes=60, required_minutes=105),
     ["(dose + 90 min monitoring)", "**at least 90 minutes of monitoring**"]),
    (TOO_EARLY, ["(90 min monitoring)", "Monitor for at least 90 minutes after the dose"]),
    (SessionFinding(SessionCheck.BP_ELEVATED_BEFORE, Urgency.WARNING, BP_RULE,
                    reading=BloodPressureFact("bp-1", DAY, 160, 96)),
     ["in the last 3 days is **160/96 mmHg**", "above 150/95 mmHg (a general guide)"]),
    (SessionFinding(SessionCheck.NO_BP_AFTER_DOSE, Urgency.WARNING, BP_RULE, dose=DOSE),
     ["recheck blood pressure about 30 minutes after the dose"]),
    (SessionFinding(SessionCheck.BP_NOT_DECREASING, Urgency.WARNING, BP_RULE, dose=DOSE,
                    reading=TimedBloodPressure("bp-2", DOSE_AT + dt.timedelta(minutes=40), 160, 96)),
     [": above 150/95 mmHg and not lower"]),
    (SessionFinding(SessionCheck.OUTPATIENT_AFTERCARE, Urgency.INFO, AFTER_CARE, outpatient=True),
     ["REMS monitoring form within 5 days;", "for this session within 5 days (outpatient"]),
], ids=lambda v: v.check.value if isinstance(v, SessionFinding) else "")
def test_a_card_states_the_site_policy_s_numbers_never_the_default_s(finding: SessionFinding,
                                                                     says: list[str]) -> None:
    (card,) = session_cards([finding], "Esketamine", SITE)
    for words in says:
        assert words in _words(card)
    for default in ("2 hours", "2 h ", "140/90", "40 minutes", "7 days", "last 7"):
        assert default not in _words(card)


@pytest.mark.parametrize("hook", [Hook.ENCOUNTER_DISCHARGE, Hook.APPOINTMENT_BOOK])
def test_the_blind_card_states_the_site_policy_s_monitoring_period(hook: Hook) -> None:
    card = blind_card(hook, [GapReason.TIMEOUT], TWO_HOURS, SITE)
    assert "90 minutes of monitoring" in _words(card) and "2 hours" not in _words(card)
    if hook is Hook.ENCOUNTER_DISCHARGE:
        assert card.detail is not None and card.detail.startswith("The 90-minute observation and blood-pressure")
