"""Which test covers each service-side SHALL/SHOULD of CDS Hooks 2.0 (docs/cds-hooks-service-requirements.csv,
from the Inferno requirement catalogue), or why none does. ``test_traceability.py`` keeps this complete, and
``python -m tests.cds_hooks.traceability`` writes docs/cds-hooks-traceability.md from it."""

from __future__ import annotations

import csv
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
CARDS = "test_cards.py::test_every_fixture_patient_gets_spec_conformant_cards"
DISCOVERY = "test_discovery.py::test_discovery_lists_five_services_with_prefetch"
TEMPLATES = "test_discovery.py::test_prefetch_templates_use_only_context_tokens_and_r4_syntax"
DELETE = "test_cards.py::test_contraindicated_card_names_the_evidence_and_offers_to_remove_the_order"
CREATE = "test_cards.py::test_workup_card_suggests_draft_service_requests"
SMART = "test_cards.py::test_candidate_card_carries_rems_reminders_and_a_smart_link"
ATTACKS = "test_auth.py::test_attacks_get_401_with_no_detail_and_the_audit_log_names_the_reason"
JWKS = "test_auth.py::test_jwks_by_url_is_cached_and_refreshed_on_unknown_kid_at_most_once_per_interval"
TLS = ("Deployment: TLS is terminated by the hospital's reverse proxy in front of `ketamine-cds serve` "
       "(docs/registration.md); tests run on loopback HTTP")
NOT_USED = "Not used by this service: the element is never sent"
CLIENT = "A CDS client obligation, not the service's"

# requirement id (Req Set:ID) -> "tests/cds_hooks/<file>::<test>" or "reason: ..."
TRACE: dict[str, str] = {
    "cds-hooks-library_1.0.1:16": TEMPLATES,
    "cds-hooks-library_1.0.1:32": "reason: the appointment-book hook is not implemented",
    "cds-hooks-library_1.0.1:73": "reason: the order-dispatch hook is not implemented",
    "cds-hooks-library_1.0.1:89": TEMPLATES,
    "cds-hooks-library_1.0.1:93": TEMPLATES,
    "cds-hooks_2.0:1": "test_requests.py::test_unknown_service_is_404",
    "cds-hooks_2.0:2": f"reason: {TLS}",
    "cds-hooks_2.0:3": CARDS,
    "cds-hooks_2.0:4": DISCOVERY, "cds-hooks_2.0:5": DISCOVERY, "cds-hooks_2.0:6": DISCOVERY,
    "cds-hooks_2.0:7": DISCOVERY, "cds-hooks_2.0:8": DISCOVERY, "cds-hooks_2.0:9": DISCOVERY,
    "cds-hooks_2.0:10": DISCOVERY, "cds-hooks_2.0:13": DISCOVERY,
    "cds-hooks_2.0:16": "test_cards.py::test_contraindicated_card_names_the_evidence_and_offers_to_remove_the_order",
    "cds-hooks_2.0:27": "reason: measured by bench/cds_latency.py (figures in the closing note), not a timed test",
    "cds-hooks_2.0:29": DISCOVERY, "cds-hooks_2.0:36": DISCOVERY,
    "cds-hooks_2.0:34": "test_prefetch.py::test_each_prefetch_state_is_completed_from_the_server",
    "cds-hooks_2.0:52": "test_prefetch.py::test_each_prefetch_state_is_completed_from_the_server",
    "cds-hooks_2.0:54": "test_prefetch.py::test_required_data_unobtainable_is_412_naming_it",
    "cds-hooks_2.0:55": TEMPLATES, "cds-hooks_2.0:56": TEMPLATES, "cds-hooks_2.0:57": TEMPLATES,
    "cds-hooks_2.0:58": TEMPLATES, "cds-hooks_2.0:59": TEMPLATES,
    "cds-hooks_2.0:61": "test_prefetch.py::test_fhir_faults_never_produce_absent",
    "cds-hooks_2.0:74": CARDS,
    "cds-hooks_2.0:75": f"reason: {NOT_USED} (systemActions)",
    "cds-hooks_2.0:77": "test_cards.py::test_orders_that_are_not_ketamine_get_no_cards",
    "cds-hooks_2.0:78": f"reason: {CLIENT}",
    "cds-hooks_2.0:80": CARDS, "cds-hooks_2.0:83": CARDS, "cds-hooks_2.0:85": CARDS, "cds-hooks_2.0:87": CARDS,
    "cds-hooks_2.0:88": CARDS, "cds-hooks_2.0:89": f"reason: {CLIENT} (display decisions)",
    "cds-hooks_2.0:90": CARDS, "cds-hooks_2.0:92": DELETE, "cds-hooks_2.0:93": CARDS, "cds-hooks_2.0:95": CARDS,
    "cds-hooks_2.0:96": CARDS, "cds-hooks_2.0:98": DELETE, "cds-hooks_2.0:100": DELETE, "cds-hooks_2.0:103": SMART,
    "cds-hooks_2.0:105": CARDS, "cds-hooks_2.0:107": DELETE,
    "cds-hooks_2.0:109": SMART, "cds-hooks_2.0:110": SMART,
    "cds-hooks_2.0:111": f"reason: {NOT_USED} (source.icon)",
    "cds-hooks_2.0:112": f"reason: {NOT_USED} (source.icon)",
    "cds-hooks_2.0:115": f"reason: {NOT_USED} (source.topic)",
    "cds-hooks_2.0:117": CARDS, "cds-hooks_2.0:119": CARDS, "cds-hooks_2.0:121": CREATE, "cds-hooks_2.0:124": CARDS,
    "cds-hooks_2.0:125": DELETE, "cds-hooks_2.0:127": CARDS, "cds-hooks_2.0:128": CARDS, "cds-hooks_2.0:130": CREATE,
    "cds-hooks_2.0:131": CREATE, "cds-hooks_2.0:132": f"reason: {NOT_USED} (update actions)",
    "cds-hooks_2.0:133": DELETE, "cds-hooks_2.0:134": DELETE, "cds-hooks_2.0:135": DELETE, "cds-hooks_2.0:136": DELETE,
    "cds-hooks_2.0:138": SMART, "cds-hooks_2.0:139": SMART, "cds-hooks_2.0:141": SMART, "cds-hooks_2.0:142": SMART,
    "cds-hooks_2.0:144": SMART, "cds-hooks_2.0:146": CARDS, "cds-hooks_2.0:147": CARDS,
    "cds-hooks_2.0:168": f"reason: {TLS}",
    "cds-hooks_2.0:176": ATTACKS,
    "cds-hooks_2.0:177": ATTACKS,
    "cds-hooks_2.0:195": ATTACKS,
    "cds-hooks_2.0:199": JWKS,
    "cds-hooks_2.0:200": "test_auth.py::test_accepted_algorithms", "cds-hooks_2.0:201": ATTACKS,
    "cds-hooks_2.0:203": ATTACKS, "cds-hooks_2.0:205": "test_auth.py::test_accepted_algorithms",
    "cds-hooks_2.0:206": "test_auth.py::test_accepted_algorithms",
    "cds-hooks_2.0:208": "test_discovery.py::test_cors_preflight_allows_only_configured_origins",
    "cds-hooks_2.0:211": "reason: no card-update services are needed; each service id is listed once",
    "cds-hooks_2.0:212": f"reason: {CLIENT}",
    "cds-hooks_2.0:213": "reason: documented in docs/registration.md (which hooks to enable, per EHR)",
    "cds-hooks_2.0:214": f"reason: {NOT_USED} (extensions)", "cds-hooks_2.0:215": f"reason: {NOT_USED} (extensions)",
    "cds-hooks_2.0:216": DELETE, "cds-hooks_2.0:217": DELETE, "cds-hooks_2.0:218": DELETE, "cds-hooks_2.0:219": DELETE,
    "cds-hooks_2.0:220": f"reason: {NOT_USED} (source.topic)",
}
LEVELS = ("SHALL", "SHOULD", "SHALL NOT", "SHOULD NOT")


def requirements() -> list[dict[str, str]]:
    with (DOCS / "cds-hooks-service-requirements.csv").open(encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["Conformance"] in LEVELS]


def write_markdown() -> None:
    lines = ["# CDS Hooks 2.0: service-side requirements and the tests that cover them", "",
             "Generated by `uv run python -m tests.cds_hooks.traceability` from `tests/cds_hooks/traceability.py`;",
             "`tests/cds_hooks/test_traceability.py` fails when a requirement is unmapped or a named test is missing.",
             "Requirements: `cds-hooks-service-requirements.csv` (Inferno catalogue, actor = service).", "",
             "| requirement | level | text | covered by |", "|---|---|---|---|"]
    for r in requirements():
        key = f"{r['Req Set']}:{r['ID']}"
        text = " ".join(r["Requirement"].split()).replace("|", "\\|")
        text = text if len(text) < 160 else text[:157] + "…"
        cover = TRACE[key]
        cover = cover.removeprefix("reason: ") if cover.startswith("reason: ") else f"`tests/cds_hooks/{cover}`"
        lines.append(f"| [{key}]({r['URL']}) | {r['Conformance']} | {text} | {cover} |")
    (DOCS / "cds-hooks-traceability.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_markdown()
