"""The screen's SQL patient key is the mapping's own rule (``fhir_mapping.patient_key``), for every reference shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_mapping import patient_key
from population import key_sql_function


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    key_sql_function(c)
    yield c
    c.close()


def sql_key(con: duckdb.DuckDBPyConnection, resource: dict[str, Any]) -> str | None:
    row = con.execute("SELECT patient_key_of(?)", [json.dumps(resource)]).fetchone()
    return None if row is None else row[0]


def mapping_key(resource: dict[str, Any]) -> str | None:
    return str(resource["id"]) if resource.get("resourceType") == "Patient" else patient_key(resource)


_ID = st.text(alphabet="abcABC0123456789-.", min_size=1, max_size=12)
_REFERENCE = st.one_of(
    _ID.map(lambda i: f"Patient/{i}"),                                   # relative
    _ID.map(lambda i: f"https://ehr.example.org/fhir/Patient/{i}"),      # absolute
    _ID.map(lambda i: f"Patient/{i}/"),                                  # a trailing slash
    st.uuids().map(lambda u: f"urn:uuid:{u}"),                           # a transaction's urn:uuid
    _ID.map(lambda i: f"Group/{i}"),                                     # not a patient
    _ID.map(lambda i: f"https://x.org/Patient/{i}/_history/2"),          # a versioned reference
    st.just(""),
)
_HOLDER = st.one_of(
    _REFERENCE.map(lambda r: {"reference": r}),
    st.just({}),
    st.just({"display": "A. Patient"}),                                  # no reference at all
    st.just("Patient/not-an-object"),
)


@given(subject=st.one_of(st.none(), _HOLDER), patient=st.one_of(st.none(), _HOLDER),
       rtype=st.sampled_from(["Observation", "Condition", "AllergyIntolerance", "MedicationDispense"]))
@settings(max_examples=300, deadline=None)
def test_the_sql_key_is_the_mappings_key(con: duckdb.DuckDBPyConnection, subject: Any, patient: Any,
                                         rtype: str) -> None:
    resource: dict[str, Any] = {"resourceType": rtype, "id": "r1"}
    if subject is not None:
        resource["subject"] = subject
    if patient is not None:
        resource["patient"] = patient
    assert sql_key(con, resource) == mapping_key(resource), resource


@pytest.mark.parametrize(("resource", "key"), [
    ({"resourceType": "Patient", "id": "p1"}, "p1"),
    ({"resourceType": "Observation", "id": "o", "subject": {"reference": "Patient/p1"}}, "p1"),
    ({"resourceType": "AllergyIntolerance", "id": "a", "patient": {"reference": "urn:uuid:1234"}}, "1234"),
    ({"resourceType": "Observation", "id": "o", "subject": {"reference": "https://h/fhir/Patient/p9"}}, "p9"),
    ({"resourceType": "Observation", "id": "o"}, None),
])
def test_reference_variants(con: duckdb.DuckDBPyConnection, resource: dict[str, Any], key: str | None) -> None:
    assert sql_key(con, resource) == mapping_key(resource) == key
