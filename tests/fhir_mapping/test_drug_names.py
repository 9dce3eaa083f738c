"""Drug names as EHRs write them: ingredient (by generic or brand name) and strength."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_mapping import CodeSets, MatchMethod, ResourcePool, add_json, to_facts
from fhir_mapping.dosage import strength_in_name

CS = CodeSets.load()


@pytest.mark.parametrize("name,ingredient,mg", [
    ("sertraline (ZOLOFT) 100 MG tablet", "sertraline", 100),
    ("buPROPion XL 300 mg 24 hr tablet", "bupropion", 300),
    ("venlafaxine ER 150 mg capsule", "venlafaxine", 150),
    ("escitalopram oxalate 10 MG Oral Tablet", "escitalopram", 10),
    ("Zoloft 100 MG Oral Tablet", "sertraline", 100),
    ("sertraline 100 MG Oral Tablet [Zoloft]", "sertraline", 100),
    ("Wellbutrin XL 150 mg tablet", "bupropion", 150),
    ("FLUoxetine (PROzac) 20 MG capsule", "fluoxetine", 20),
    ("DULoxetine (CYMBALTA) 60 MG capsule", "duloxetine", 60),
    ("traZODone 50 MG tablet", "trazodone", 50),
    ("mirtazapine (REMERON) 15 MG tablet", "mirtazapine", 15),
    ("Lexapro 10 mg tablet", "escitalopram", 10),
    ("Trintellix 20 MG Oral Tablet", "vortioxetine", 20),
])
def test_ehr_style_names(name: str, ingredient: str, mg: float) -> None:
    found = CS.antidepressant_in_name(name)
    assert found and found[0].ingredient == ingredient
    strength = strength_in_name(name, ingredient, CS.brands_by_ingredient.get(ingredient, ()))
    assert strength is not None and strength.mg == mg


@pytest.mark.parametrize("name", ["Spravato 56 MG Dose Pack", "SPRAVATO 28 MG/DEVICE nasal spray", "Ketalar 50 mg/mL"])
def test_esketamine_and_ketamine_brands(name: str) -> None:
    assert CS.names_ketamine(name)


def test_every_brand_maps_to_an_ingredient_of_the_value_sets() -> None:
    assert CS.brands_by_ingredient  # the file loads
    for ingredient, brands in CS.brands_by_ingredient.items():
        assert ingredient in CS.antidepressants_by_name
        for brand in brands:
            assert CS.antidepressant_in_name(f"{brand.title()} 10 MG tablet")[0].ingredient == ingredient


_INGREDIENTS = sorted(CS.antidepressants_by_name)


@st.composite
def _ehr_names(draw: st.DrawFn) -> tuple[str, str, float]:
    ingredient = draw(st.sampled_from(_INGREDIENTS))
    brands = CS.brands_by_ingredient.get(ingredient, ())
    name = draw(st.sampled_from([ingredient, *brands]))
    # Tall-man lettering and arbitrary case: EHRs write "buPROPion", "FLUoxetine".
    name = "".join(c.upper() if draw(st.booleans()) else c for c in name)
    between = draw(st.lists(st.sampled_from(["hydrochloride", "HCl", "oxalate", "ER", "XL", "SR", "(BRAND)",
                                             "[Brand]", "extended-release"]), max_size=3))
    mg = draw(st.sampled_from([0.5, 5, 10, 12.5, 20, 25, 37.5, 50, 100, 150, 300, 450]))
    form = draw(st.sampled_from(["tablet", "Oral Tablet", "capsule", "24 hr tablet", "ODT", ""]))
    return " ".join([name, *between, f"{mg:g}", draw(st.sampled_from(["MG", "mg", "Mg"])), form]).strip(), \
        ingredient, mg


@given(_ehr_names())
def test_strength_and_ingredient_are_read_from_any_ehr_style_name(case: tuple[str, str, float]) -> None:
    name, ingredient, mg = case
    found = CS.antidepressant_in_name(name)
    assert found and found[0].ingredient == ingredient
    strength = strength_in_name(name, ingredient, CS.brands_by_ingredient.get(ingredient, ()))
    assert strength is not None and strength.mg == mg


def _request(concept: dict, text: str, **extra: object) -> dict:  # type: ignore[type-arg]
    return {"resourceType": "MedicationRequest", "id": f"mr{abs(hash(text)) % 10_000}", "status": "active",
            "intent": "order", "subject": {"reference": "Patient/p"}, "authoredOn": "2026-01-01",
            "medicationCodeableConcept": concept, "dosageInstruction": [{"text": text}],
            "dispenseRequest": {"expectedSupplyDuration": {"value": 90, "unit": "days", "code": "d"}}, **extra}


def test_a_brand_only_name_makes_a_course_with_its_strength() -> None:
    pool = ResourcePool()
    add_json(pool, _request({"text": "Zoloft 100 MG Oral Tablet"}, "Take 1 tablet by mouth 2 (two) times a day"),
             "t")
    (course,) = to_facts(pool, "p").courses
    assert course.ingredient == "sertraline" and course.match_method is MatchMethod.BRAND_NAME
    assert course.segments[0].daily_mg == 200
    assert course.segments[0].end == dt.date(2026, 1, 1) + dt.timedelta(days=90)
