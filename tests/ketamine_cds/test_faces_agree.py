"""One answer everywhere: for every fixture chart, loaded into a real FHIR server (SEKMET), ``evaluate`` on the file,
``evaluate --fhir-server``, the CDS cards (full prefetch, partial prefetch, none) and the SMART app's review give the
same verdict, treatment resistance and nine contraindication statuses."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from eligibility import assess_pool, assessment_to_json, load_policy
from fhir_mapping import SEARCHES, ClientSettings, FhirClient, read_path
from fhir_mapping.outbound import http_client
from ketamine_cds.cli import main
from smart_app.oauth import RESOURCE_TYPES
from smart_app.review import load_review

from ..cds_hooks.conftest import Post, draft_order
from ..conftest import Sekmet, server_comparable_bundles

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
AUTH = {"access_token": "ehr-token", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read",
        "subject": "ketamine-cds"}
AS_OF = dt.date(2026, 11, 1)  # the fixtures' day, and the CDS test app's today


def _summary(a: dict[str, Any]) -> dict[str, Any]:
    course = a["course"] and {k: a["course"][k] for k in ("current", "phase", "response", "doses")
                              if a["course"][k] is not None}
    return {"verdict": a["verdict"], "treatment_resistance": a["treatment_resistance"]["status"],
            "contraindications": {k: v["status"] for k, v in a["contraindications"].items()}, "course": course}


def _from_card(cards: list[dict[str, Any]]) -> dict[str, Any]:
    # Every card carries the assessment it renders; all cards of one answer carry the same.
    extensions = [c["extension"]["ketamine-cds"] for c in cards]
    assert extensions and all(e == extensions[0] for e in extensions)
    e = extensions[0]
    return {"verdict": e["verdict"], "treatment_resistance": e["treatment_resistance"],
            "contraindications": e["contraindications"], "course": e.get("course")}


async def _server_prefetch(sekmet: Sekmet, pid: str) -> dict[str, Any]:
    """What an EHR sends when it honours every template: each search run against the server."""
    prefetch: dict[str, Any] = {}
    async with http_client(timeout=20) as http:
        for search in SEARCHES:
            query = search.query(pid)
            r = await http.get(f"{sekmet.base_url}/{query.path}", params=query.params)
            prefetch[search.key] = r.json()
    return prefetch


async def _card_summary(post: Post, pid: str, prefetch: dict[str, Any], server: str) -> dict[str, Any]:
    body = {"hook": "order-sign", "hookInstance": f"agree-{pid}", "fhirServer": server, "fhirAuthorization": AUTH,
            "context": {"userId": "Practitioner/dr-1", "patientId": pid,
                        "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                        "entry": [{"resource": draft_order(pid)}]}},
            "prefetch": prefetch}
    r = await post("ketamine-order-sign", body)
    assert r.status_code == 200, r.text
    return _from_card(r.json()["cards"])


@pytest.mark.parametrize("path", server_comparable_bundles(), ids=lambda p: p.stem)
async def test_every_face_gives_the_same_answer(path: Path, sekmet: Sekmet, post: Post,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    expected = json.loads(path.with_name(path.stem + ".expected.json").read_text())
    pid = expected["patient"].removeprefix("Patient/")
    policy = load_policy("default")

    from_file, _ = assess_pool(read_path(path), policy, AS_OF)
    answers = {"evaluate file": _summary(assessment_to_json(from_file))}

    # The CLI runs its own event loop: in a thread, as from a shell.
    assert await asyncio.to_thread(main, ["evaluate", "--fhir-server", sekmet.base_url, "--patient", pid,
                                          "--as-of", AS_OF.isoformat(), "--timeout", "20"]) == 0
    answers["evaluate --fhir-server"] = _summary(json.loads(capsys.readouterr().out))

    full = await _server_prefetch(sekmet, pid)
    answers["card, full prefetch"] = await _card_summary(post, pid, full, sekmet.base_url)
    partial = {k: v for i, (k, v) in enumerate(full.items()) if i % 2 == 0}
    answers["card, partial prefetch"] = await _card_summary(post, pid, partial, sekmet.base_url)
    answers["card, no prefetch"] = await _card_summary(post, pid, {}, sekmet.base_url)

    client = FhirClient(sekmet.base_url, settings=ClientSettings(budget_s=20))
    review = await load_review(client, pid, set(RESOURCE_TYPES), policy, AS_OF)
    answers["SMART app"] = _summary(assessment_to_json(review.assessment))

    reference = answers["evaluate file"]
    assert reference["verdict"] == expected["verdict"]
    for face, answer in answers.items():
        assert answer == reference, f"{path.stem}: {face} disagrees with evaluate on the file"
