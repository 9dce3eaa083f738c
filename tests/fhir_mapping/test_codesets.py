"""Code sets: value-set members and ICD-10-CM ranges map codes to the concepts the rules use."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import fhir_mapping
from fhir_mapping import CodeSets, ObservationGroup
from fhir_mapping.codesets import ICD10CM, SNOMED

CS = CodeSets.load()


@pytest.mark.parametrize("code,concepts", [
    ("F33.2", {"major_depression"}),
    ("F332", {"major_depression"}),
    ("F32.89", {"major_depression"}),
    ("F33.3", {"major_depression", "psychosis"}),
    ("F20.9", {"psychosis"}),
    ("F22", {"psychosis"}),            # outside the VSAC value set, inside F20-F29
    ("F31.81", {"bipolar"}),
    ("F41.1", {"anxiety"}),
    ("F43.10", {"anxiety"}),
    ("I50.22", {"heart_failure"}),
    ("I21.4", {"myocardial_infarction"}),
    ("I20.0", {"unstable_angina"}),
    ("I71.40", {"aneurysm_or_avm"}),
    ("Q28.2", {"aneurysm_or_avm"}),
    ("I61.9", {"intracerebral_hemorrhage"}),
    ("I60.9", {"subarachnoid_hemorrhage"}),  # not intracerebral; reviewed as a possible aneurysm
    ("F14.20", {"substance_use"}),
    ("F14.21", set()),                  # in remission
    ("F17.210", set()),                 # nicotine is not in scope
    ("O09.90", {"pregnancy"}),
    ("Z33.1", {"pregnancy"}),
    ("F34.1", set()),                   # dysthymia is not major depression
])
def test_icd10cm(code: str, concepts: set[str]) -> None:
    assert CS.condition_concepts(ICD10CM, code) == concepts


@pytest.mark.parametrize("code,concepts", [
    ("370143000", {"major_depression"}),
    ("28475009", {"major_depression", "psychosis"}),
    ("83225003", {"bipolar"}),
    ("274100004", {"intracerebral_hemorrhage"}),
    ("270907008", {"subarachnoid_hemorrhage"}),  # not intracerebral; reviewed as a possible aneurysm
    ("724715004", {"substance_use"}),
    ("77386006", {"pregnancy"}),
])
def test_snomed(code: str, concepts: set[str]) -> None:
    assert CS.condition_concepts(SNOMED, code) == concepts


def test_system_aliases_and_unknown_systems() -> None:
    assert CS.condition_concepts("urn:oid:2.16.840.1.113883.6.90", "F33.1") == {"major_depression"}
    assert CS.condition_concepts("http://example.org/local", "F33.1") == frozenset()


def test_observation_groups() -> None:
    loinc = "http://loinc.org"
    assert CS.observation_group(loinc, "44261-6") == "phq9_total"
    assert CS.observation_group(loinc, "8480-6") == "systolic"
    assert CS.observation_group(loinc, "2106-3") == "pregnancy_test"
    assert CS.observation_group(loinc, "80384-1") == "pregnancy_test"  # from the VSAC Pregnancy Test value set
    assert CS.observation_group(loinc, "2345-7") is None


def test_the_observation_groups_are_those_of_the_code_file() -> None:
    # Each group has a reader of its own in the mapping: a group added to the file must be added to the enum.
    data = tomllib.loads((Path(fhir_mapping.__file__).parent / "data" / "observation_codes.toml").read_text())
    assert set(data) == {g.value for g in ObservationGroup}
    assert all(CS.observation_codes(g) for g in ObservationGroup)


def test_local_additions_extend_a_concept(tmp_path: Path) -> None:
    additions = tmp_path / "local.toml"
    additions.write_text('[bipolar]\nextra = [{system = "SNOMEDCT", codes = ["999999"]}]\n')
    local = CodeSets.load(additions)
    assert local.condition_concepts(SNOMED, "999999") == {"bipolar"}
    assert CS.condition_concepts(SNOMED, "999999") == frozenset()
    assert local.condition_concepts(ICD10CM, "F31.81") == {"bipolar"}


def test_vsac_clinical_drugs_carry_their_source_columns() -> None:
    assert CS.clinical_drugs["312938"].display == "sertraline 100 MG Oral Tablet"
    assert [a.ingredient for a in CS.antidepressant_in_name("bupropion hydrochloride 105 MG / "
                                                              "dextromethorphan hydrobromide 45 MG")] == ["bupropion"]
    assert CS.antidepressant_in_name("lamotrigine 25 MG Oral Tablet") == []


def test_every_alcohol_misuse_status_code_is_an_alcohol_member_of_the_vsac_value_set_it_cites() -> None:
    # Sourced, never invented: each code is in VSAC Alcohol and Drug Dependence (CMS137) as we hold it, names
    # alcohol abuse, alcohol dependence or alcoholism, and is not a remission.
    import csv

    rows = {row["code"]: row for row in csv.DictReader(
        (Path(__file__).parents[2] / "fhir_mapping" / "data" / "condition_and_observation_valuesets.csv")
        .read_text(encoding="utf-8").splitlines())
        if row["value_set"] == "Alcohol and Drug Dependence" and row["code_system"] == "SNOMEDCT"}
    codes = CS.observation_codes("alcohol_misuse_status")
    assert len(codes) == 12
    for system, code in codes:
        assert system == SNOMED and code in rows
        display = rows[code]["display"].lower()
        assert "alcohol" in display and "remission" not in display


def test_the_substance_use_search_asks_for_the_alcohol_misuse_codes_too() -> None:
    # Many EHRs answer an Observation search only for the codes asked: the search and the mapping never drift.
    from fhir_mapping import SEARCHES

    search = next(s for s in SEARCHES if s.key == "drugScreens")
    asked = dict(search.query("p1").params)["code"].split(",")
    assert f"{SNOMED}|15167005" in asked and f"{SNOMED}|228366006" in asked
