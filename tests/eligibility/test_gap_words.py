"""Data gaps in a clinician's words, sentence by sentence: what could not be obtained, why, and what stays unknown
("unknown, not absent"); alike gaps once, with their number."""

from __future__ import annotations

from eligibility import gap_sentence, gap_sentences
from fhir_mapping import DataDomain, DataGap, GapReason, ResourceType

PHQ9 = frozenset({DataDomain.PHQ9})


def test_a_search_that_timed_out_says_what_why_and_what_stays_unknown() -> None:
    gap = DataGap(ResourceType.OBSERVATION, GapReason.TIMEOUT, domains=frozenset({DataDomain.BLOOD_PRESSURE,
                                                                                  DataDomain.PHQ9}))
    assert gap_sentence(gap) == ("Observations could not be obtained: the EHR did not answer in time. Unknown, not "
                                 "absent: PHQ-9 scores and blood pressure.")


def test_a_gap_that_leaves_nothing_unknown_says_only_what_and_why() -> None:
    assert gap_sentence(DataGap(ResourceType.SERVICE_REQUEST, GapReason.NOT_FOUND)) == (
        "Orders for tests could not be obtained: they were not found.")


def test_unreadable_entries_are_counted_one_entry_or_several_entries() -> None:
    one = DataGap(ResourceType.CONDITION, GapReason.UNREADABLE)
    assert gap_sentence(one) == "1 diagnosis entry could not be read."
    assert gap_sentence(one, 2) == "2 diagnosis entries could not be read."


def test_several_medications_that_cannot_be_obtained_are_one_sentence_with_their_number() -> None:
    unresolved = DataGap(ResourceType.MEDICATION, GapReason.UNRESOLVED_REFERENCE,
                         domains=frozenset({DataDomain.MEDICATIONS}))
    assert gap_sentence(unresolved) == ("A medication that an order or statement names could not be obtained: the "
                                        "record it points to could not be found. Unknown, not absent: antidepressant "
                                        "trials.")
    assert gap_sentence(unresolved, 2) == ("2 medications that orders or statements name could not be obtained: the "
                                           "records they point to could not be found. Unknown, not absent: "
                                           "antidepressant trials.")
    forbidden = DataGap(ResourceType.MEDICATION, GapReason.FORBIDDEN)
    assert gap_sentence(forbidden, 3) == ("3 medications that orders or statements name could not be obtained: access "
                                          "was not granted.")


def test_alike_gaps_are_one_sentence_with_their_number_in_the_order_found() -> None:
    med = DataGap(ResourceType.MEDICATION, GapReason.UNRESOLVED_REFERENCE, "Medication/a")
    obs = DataGap(ResourceType.OBSERVATION, GapReason.TIMEOUT, domains=PHQ9)
    other = DataGap(ResourceType.MEDICATION, GapReason.UNRESOLVED_REFERENCE, "Medication/b")
    assert gap_sentences([med, obs, other]) == (
        "2 medications that orders or statements name could not be obtained: the records they point to could not be "
        "found.",
        "Observations could not be obtained: the EHR did not answer in time. Unknown, not absent: PHQ-9 scores.")
