"""An assessment rendered as CDS Hooks cards: one card per concern, never a wall.

- the verdict: ``critical`` for a present contraindication (with a suggestion to remove the draft order),
  ``warning`` for not indicated or missing work-up (with draft ServiceRequests for the work-up), ``info`` for a
  candidate (with the REMS / supervised-setting reminders);
- a ``warning`` for a compounded, oral, sublingual or at-home ketamine product (FDA, October 2023);
- a ``warning`` gathering the cautions (suicide-risk review, BP monitoring with MAOIs or stimulants, age, and the
  contraindications a policy treats as cautions).
Every card carries the source the policy cites, a uuid, and a SMART link that opens the review app on it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from eligibility import (
    LABEL_CONTRAINDICATIONS,
    Adequacy,
    Assessment,
    Citation,
    ContraindicationId,
    Criterion,
    Evidence,
    GapAction,
    GapStep,
    Mode,
    Outcome,
    Policy,
    Presence,
    ReasonKind,
    ResponseClass,
    Verdict,
    Warning,
    WarningId,
    WorkupItem,
    WorkupKind,
    cited_source,
    contraindication_label,
    course_summary,
    esketamine_dose_outside_label,
    gap_action_phrase,
    gap_sentences,
    gap_workup,
    product_word,
)
from eligibility import Source as PolicySource
from fhir_mapping import DataDomain, KetamineOrder

from .markdown import markdown_code, markdown_prose
from .models import Action, Card, CardKind, Coding, Indicator, Link, Source, Suggestion
from .policy_words import blood_pressure, duration

OVERRIDE_SYSTEM = "https://ketamine-cds.org/CodeSystem/override-reason"
#: Our override reasons: code → what the clinician reads (also how the feedback report names a bare code).
OVERRIDE_REASONS = {
    "benefit-outweighs-risk": "Benefit outweighs risk for this patient",
    "chart-data-incorrect": "Chart data is incorrect or out of date",
    "specialist-decision": "Decided with psychiatry / specialist",
    "workup-done-elsewhere": "Work-up already done, not yet in the chart",
    "will-obtain-before-dosing": "Will obtain before the first dose",
    "diagnosis-not-current": "Diagnosis is historical, resolved or was ruled out",
    "trials-documented-elsewhere": "Antidepressant trials documented outside this chart",
    "monitored-protocol": "Given under a monitored clinical protocol or study",
    "assessed-stable": "Assessed in person: clinically stable",
    "reading-not-in-chart": "Reading taken, not yet in the chart",
}
_CRITICAL_OVERRIDES = ("diagnosis-not-current", "chart-data-incorrect", "specialist-decision",
                       "benefit-outweighs-risk")
_WARNING_OVERRIDES = ("workup-done-elsewhere", "will-obtain-before-dosing", "chart-data-incorrect",
                      "benefit-outweighs-risk")
_NOT_INDICATED_OVERRIDES = ("trials-documented-elsewhere", "chart-data-incorrect", "specialist-decision",
                            "benefit-outweighs-risk")
_FDA_OVERRIDES = ("monitored-protocol", "specialist-decision", "chart-data-incorrect")
_CAUTION_OVERRIDES = ("benefit-outweighs-risk", "specialist-decision", "chart-data-incorrect")
_SERVICE_REQUESTS: dict[WorkupKind, tuple[str, str, str]] = {
    # kind: (LOINC code, display, label)
    WorkupKind.PHQ9: ("44249-1", "PHQ-9 quick depression assessment panel", "Order a PHQ-9"),
    WorkupKind.BLOOD_PRESSURE: ("85354-9", "Blood pressure panel with all children optional",
                                "Order a blood pressure measurement"),
    WorkupKind.DRUG_SCREEN: ("19359-9", "Cocaine [Presence] in Urine by Screen method",
                             "Order a urine drug screen"),
    WorkupKind.PREGNANCY_TEST: ("2106-3", "Choriogonadotropin (pregnancy test) [Presence] in Urine",
                                "Order a urine pregnancy test"),
}


@dataclass(frozen=True, slots=True)
class CardContext:
    """What the cards need besides the assessment: the call, the orders, where the review app lives."""

    hook_instance: str
    patient_id: str
    user_id: str | None
    encounter_id: str | None
    orders: tuple[KetamineOrder, ...]
    smart_launch_url: str | None


def _source(citation: Citation | None, fallback: PolicySource | None = None) -> Source:
    """The card's source: a primary citation only (an FDA label, a journal, a measure steward). A threshold that rests
    on a local choice or a secondary summary says so in the detail, never in the source label."""
    candidates = [*(citation.sources if citation else ()), *([fallback] if fallback else [])]
    first = next((s for s in candidates if s.primary), None)
    if first is None:
        return Source(label="ketamine-cds clinic policy (see the card's detail for its basis)")
    return Source(label=first.label[:200], url=first.url)


def _basis(cid: ContraindicationId, citation: Citation) -> str:
    """What a contraindication rests on, in words a clinician accepts: its primary sources, and, for an exclusion
    the sources do not state as such, that it is this clinic's rule (never "not verified" beside a label fact)."""
    cited = "; ".join(f"[{s.label}]({s.url})" for s in citation.sources if s.primary)
    if not cited:
        return "Basis: this clinic's policy (no primary source states it)"
    if cid in LABEL_CONTRAINDICATIONS or citation.verified:
        return f"Source: {cited}"
    return f"Basis: this clinic's policy, informed by {cited}"


def _sources_line(*source_ids: str) -> str:
    """The primary citations behind a card's statements, as Markdown links (label: the FDA label; REMS: the REMS)."""
    names = {"S1": "label", "S3": "REMS", "S4": "REMS program", "S8": "EU SmPC", "S62": "US dosing",
             "S31": "response", "S25": "remission"}
    links = [f"[{names.get(sid, sid)}: {cited_source(sid).label}]({cited_source(sid).url})" for sid in source_ids]
    return "Sources: " + "; ".join(links)


def _remove_orders(orders: Iterable[KetamineOrder], *, recommended: bool) -> list[Suggestion]:
    """One suggestion per draft order: remove it (the action a clinician takes when the card is right)."""
    return [Suggestion(label=f"Remove the draft {o.name} order", uuid=str(uuid.uuid4()), isRecommended=recommended,
                       actions=[Action(type="delete", description=f"Remove the draft order {o.reference}",
                                       resourceId=o.reference)])
            for o in orders]


def _removal_behaviour(suggestions: list[Suggestion]) -> Literal["at-most-one", "any"] | None:
    # One draft order: remove it or not. Several: any of them (at-most-one would allow at most one recommended).
    if not suggestions:
        return None
    return "at-most-one" if len(suggestions) == 1 else "any"


def _overrides(codes: Iterable[str]) -> list[Coding]:
    return [Coding(system=OVERRIDE_SYSTEM, code=c, display=OVERRIDE_REASONS[c]) for c in codes]


#: Longest card summary: the decisive finding must read at a glance (CDS Hooks allows 140).
SUMMARY_MAX = 90
_ADEQUACY_WORDS = {Adequacy.ADEQUATE: "adequate", Adequacy.INADEQUATE: "not adequate",
                   Adequacy.UNKNOWN: "adequacy unknown"}
_OUTCOME_WORDS = {Outcome.RESPONSE: "responded", Outcome.NO_RESPONSE: "no response",
                  Outcome.UNKNOWN: "response unknown"}
_INDICATOR_ORDER = {Indicator.CRITICAL: 0, Indicator.WARNING: 1, Indicator.INFO: 2}


def _summary(text: str) -> str:
    """At most SUMMARY_MAX characters, cut at a word."""
    if len(text) <= SUMMARY_MAX:
        return text
    return text[:SUMMARY_MAX - 1].rsplit(" ", 1)[0].rstrip(" ,;:—-") + "…"


def _mg(value: float | None) -> str:
    return "dose not documented" if value is None else f"{value:g} mg/day"


def _trial_line(t: Any) -> str:
    return (f"{markdown_prose(t.ingredient)}: {t.start.isoformat()} to {t.end.isoformat()}, "
            f"{_mg(t.max_daily_dose_mg)}, "
            f"{t.weeks_at_adequate_dose:g} weeks at an adequate dose — {_ADEQUACY_WORDS[t.adequacy]}, "
            f"{_OUTCOME_WORDS[t.outcome]}")


def _when(evidence: tuple[Evidence, ...]) -> str:
    days = [e.day for e in evidence if e.day is not None]
    return f" ({max(days).year})" if days else ""


def _evidence_lines(evidence: Iterable[Evidence]) -> list[str]:
    lines = []
    for e in evidence:
        when = f", {e.day.isoformat()}" if e.day else ""
        lines.append(f"  - {markdown_prose(e.description)}{when} (`{markdown_code(e.reference)}`)")
    return lines


def _gaps_block(a: Assessment) -> list[str]:
    if not a.data_gaps:
        return []
    return ["", "**Data that could not be obtained (treated as unknown, not absent):**",
            *[f"- {markdown_prose(g)}" for g in gap_sentences(a.gaps)]]


def _course_block(a: Assessment) -> list[str]:
    """The course leads every card of a patient already treated: what was given, and the response since."""
    if a.course is None:
        return []
    c = a.course
    line = markdown_prose(course_summary(c))
    if not c.current:
        line += " — ended; this order is judged as a new start"
    return [f"**{line}**", ""]


#: The review page's section that shows what each kind of card speaks to (the app scrolls there).
REVIEW_SECTION = {
    CardKind.CONTRAINDICATED: "checklist", CardKind.WORK_UP_NEEDED: "workup", CardKind.NOT_INDICATED: "trials",
    CardKind.CRITERIA_MET: "verdict", CardKind.FDA_WARNS: "verdict", CardKind.CAUTION: "warnings",
    CardKind.ACTIVE_THERAPY: "course", CardKind.TREATMENT_RESISTANT: "trials",
    CardKind.COURSE_CONTINUES: "course", CardKind.COURSE_REASSESS: "course", CardKind.DOSE_OUTSIDE_LABEL: "course",
}


def _link(ctx: CardContext, a: Assessment, card: Card) -> list[Link] | None:
    """The SMART link that opens the review on this card: its summary, its section, the same assessment."""
    if not ctx.smart_launch_url:
        return None
    app_context = json.dumps({"hookInstance": ctx.hook_instance, "card": card.uuid, "policy": a.policy,
                              "asOf": a.as_of.isoformat(), "patient": ctx.patient_id, "summary": card.summary,
                              "section": REVIEW_SECTION.get(card.kind, "verdict")}, separators=(",", ":"))
    return [Link(label="Open the ketamine-cds review (trials, PHQ-9, BP, checklist)", url=ctx.smart_launch_url,
                 type="smart", appContext=app_context)]


def _product(ctx: CardContext, policy: Policy) -> str:
    if ctx.orders and all(o.esketamine for o in ctx.orders):
        return "Esketamine"
    if ctx.orders:
        return "Ketamine"
    return policy.product.capitalize()


def _contraindicated_card(a: Assessment, policy: Policy, ctx: CardContext) -> Card:
    present = [(cid, f) for cid, f in a.contraindications.items()
               if f.status is Presence.PRESENT and policy.contraindications[cid].mode is Mode.EXCLUDE]
    names = [contraindication_label(cid) for cid, _ in present]
    card_id = str(uuid.uuid4())
    detail = [*_course_block(a), f"**{_product(ctx, policy)} is contraindicated** under policy *{policy.title}*:", ""]
    for cid, finding in present:
        rule = policy.contraindications[cid]
        kind = ("a contraindication in the esketamine label" if cid in LABEL_CONTRAINDICATIONS
                else "an exclusion of this clinic policy")
        detail.append(f"- **{contraindication_label(cid).capitalize()}** ({kind}): "
                      f"{markdown_prose(finding.explanation)}")
        detail.extend(_evidence_lines(finding.evidence))
        detail.append(f"  - {_basis(cid, rule.citation)}")
    detail += _gaps_block(a)
    suggestions = _remove_orders(ctx.orders, recommended=True)
    first_cid, first = present[0]
    basis = "label contraindication" if first_cid in LABEL_CONTRAINDICATIONS else "excluded by clinic policy"
    return Card(
        kind=CardKind.CONTRAINDICATED,
        uuid=card_id,
        summary=_summary(f"{_product(ctx, policy)}: {_finding_phrase(first_cid, first)} — {basis}"
                         + (f" (+{len(names) - 1})" if len(names) > 1 else "")),
        detail="\n".join(detail),
        indicator=Indicator.CRITICAL,
        source=_source(policy.contraindications[present[0][0]].citation),
        suggestions=suggestions or None,
        selectionBehavior=_removal_behaviour(suggestions),
        overrideReasons=_overrides(_CRITICAL_OVERRIDES),
    )


def _service_request(item: WorkupItem, ctx: CardContext) -> Suggestion | None:
    spec = _SERVICE_REQUESTS.get(item.kind)
    if spec is None:
        return None
    code, display, label = spec
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{ctx.patient_id}"},
        "reasonCode": [{"text": "Work-up before ketamine/esketamine (ketamine-cds)"}],
    }
    if ctx.encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{ctx.encounter_id}"}
    if ctx.user_id:
        resource["requester"] = {"reference": ctx.user_id}
    return Suggestion(label=label, uuid=str(uuid.uuid4()), isRecommended=item.required,
                      actions=[Action(type="create", description=f"Draft order: {display}", resource=resource)])


def _finding_phrase(cid: ContraindicationId, finding: Any) -> str:
    """The decisive finding in plain words: 'bipolar disorder on record (2019)', 'BP 182/110 on 20 Oct'."""
    if cid is ContraindicationId.UNCONTROLLED_HYPERTENSION and finding.evidence and finding.evidence[0].day:
        latest = finding.evidence[0]
        return f"uncontrolled hypertension, {latest.description.removesuffix(' mmHg')} on " \
               f"{latest.day.day} {latest.day:%b}"
    return f"{contraindication_label(cid)} on record{_when(finding.evidence)}"


def _warning_phrase(w: Warning, policy: Policy) -> str:
    """A warning in a few words, for the cautions card's summary (its detail has the whole text)."""
    named = w.evidence[0].description if w.evidence else ""
    if w.id is WarningId.SUICIDE_RISK_REVIEW:
        return f"suicide-risk review ({named})"
    if w.id in (WarningId.BP_MONITORING_MAOI, WarningId.BP_MONITORING_PSYCHOSTIMULANT):
        return f"monitor blood pressure closely ({named})"
    if w.id is WarningId.CNS_DEPRESSANT_SEDATION:
        return f"monitor for sedation ({named}, a CNS depressant)"
    if w.id is WarningId.OLDER_ADULT:
        return f"older adult: the label's starting dose is {policy.thresholds.esketamine_older_start_mg:g} mg"
    if w.contraindication is not None:
        return f"{contraindication_label(w.contraindication)}: weigh benefit against risk"
    return w.text


def _workup_phrase(a: Assessment, item: WorkupItem) -> str:
    """The first thing to obtain, in a few words, for the summary."""
    if item.kind is WorkupKind.BLOOD_PRESSURE:
        bp = a.contraindications[ContraindicationId.UNCONTROLLED_HYPERTENSION]
        latest = bp.evidence[0] if bp.evidence else None
        if latest is not None and latest.day is not None:
            reading = latest.description.removeprefix("BP ").removesuffix(" mmHg")
            return f"recheck BP ({reading} on {latest.day.day} {latest.day:%b})"
        return "a blood pressure reading"
    if item.kind is WorkupKind.DATA:  # what to do depends on why the data is missing (retry helps only sometimes)
        step = _gap_step(a, item)
        return gap_action_phrase(step.action if step else GapAction.REVIEW)
    phrases = {WorkupKind.PHQ9: "a current PHQ-9", WorkupKind.DRUG_SCREEN: "a urine drug screen",
               WorkupKind.PREGNANCY_TEST: "a pregnancy test"}
    if item.kind in phrases:
        return phrases[item.kind]
    return item.text[0].lower() + item.text[1:]


#: The policy value whose rule asks for each work-up item: the card cites that value's primary source (the label for
#: blood pressure, the PHQ-9's validation study for a PHQ-9, the antidepressants' labels for a dose).
_WORKUP_THRESHOLD = {
    WorkupKind.PHQ9: "severity_phq9_min", WorkupKind.BASELINE_PHQ9: "severity_phq9_min",
    WorkupKind.BLOOD_PRESSURE: "bp_systolic_above", WorkupKind.TRIAL_RESPONSE: "response_max_fraction",
    WorkupKind.TRIAL_DURATION: "min_failed_trials", WorkupKind.ADHERENCE: "min_failed_trials",
}
_WORKUP_CONTRAINDICATION = {WorkupKind.DRUG_SCREEN: ContraindicationId.SUBSTANCE_USE,
                            WorkupKind.PREGNANCY_TEST: ContraindicationId.PREGNANCY}


def _gap_step(a: Assessment, item: WorkupItem) -> GapStep | None:
    return next((s for s in gap_workup(a.gaps) if s.text == item.text), None)


#: For data that could not be obtained, the rule it leaves unknown (the card cites that rule's source).
_GAP_THRESHOLD = {
    DataDomain.MEDICATIONS: "min_failed_trials", DataDomain.PHQ9: "severity_phq9_min",
    DataDomain.BLOOD_PRESSURE: "bp_systolic_above", DataDomain.TREATMENT_COURSE: "session_induction_weeks",
}


def _item_citation(a: Assessment, item: WorkupItem, policy: Policy) -> Citation | None:
    """The citation behind one work-up item: the rule that asks for it (none for data that could not be obtained)."""
    kind = item.kind
    if kind in _WORKUP_THRESHOLD:
        return policy.cite(_WORKUP_THRESHOLD[kind])
    if kind is WorkupKind.TRIAL_DOSE:
        return policy.dose_floor_citation
    if kind in _WORKUP_CONTRAINDICATION:
        return policy.contraindications[_WORKUP_CONTRAINDICATION[kind]].citation
    if kind is WorkupKind.CONDITION_REVIEW:  # the item names its contraindication first
        cid = next((c for c, f in a.contraindications.items() if f.status is Presence.UNKNOWN and f.evidence
                    and item.text.lower().startswith(contraindication_label(c).lower())), None)
        return policy.contraindications[cid].citation if cid is not None else None
    if kind is WorkupKind.DATA and (step := _gap_step(a, item)) is not None:
        rule = next((_GAP_THRESHOLD[d] for d in DataDomain if d in step.domains and d in _GAP_THRESHOLD), None)
        return policy.cite(rule) if rule is not None else None
    return None


def _workup_citation(a: Assessment, policy: Policy) -> Citation | None:
    """The citation behind the card's first item (what its summary asks for)."""
    return _item_citation(a, a.workup[0], policy) if a.workup else None


def _workup_sources(a: Assessment, policy: Policy) -> list[str]:
    """A linked Sources line for the rules that ask for the work-up items, primary sources only, each once."""
    seen: dict[str, PolicySource] = {}
    for item in a.workup:
        citation = _item_citation(a, item, policy)
        for s in citation.sources if citation else ():
            if s.primary:
                seen.setdefault(s.id, s)
    if not seen:
        return []
    return ["", "Sources: " + "; ".join(f"[{s.label}]({s.url})" for s in seen.values())]


def _workup_card(a: Assessment, policy: Policy, ctx: CardContext) -> Card:
    card_id = str(uuid.uuid4())
    unknown = [r for r in a.reasons if r.kind is ReasonKind.UNKNOWN]
    first = _workup_phrase(a, a.workup[0]) if a.workup else "information is missing"
    detail = [*_course_block(a), f"**Before deciding on {_product(ctx, policy).lower()}, obtain:**", ""]
    detail += [f"- {markdown_prose(w.text)}" + ("" if w.required else " *(suggested)*") for w in a.workup]
    detail += ["", "**Why:**", *[f"- {markdown_prose(r.text)}" for r in unknown]]
    tr = a.treatment_resistance
    if tr.trials:
        detail += ["", f"**Antidepressant trials** ({tr.failed_adequate_trials} failed adequate):"]
        detail += [f"- {_trial_line(t)}" for t in tr.trials]
    detail += _gaps_block(a)
    detail += _workup_sources(a, policy)
    suggestions = [s for w in a.workup if (s := _service_request(w, ctx)) is not None]
    return Card(
        kind=CardKind.WORK_UP_NEEDED,
        uuid=card_id,
        summary=_summary(f"Work-up before {_product(ctx, policy).lower()}: {first}"),
        detail="\n".join(detail),
        indicator=Indicator.WARNING,
        source=_source(_workup_citation(a, policy)),
        suggestions=suggestions or None,
        selectionBehavior="any" if suggestions else None,
        overrideReasons=_overrides(_WARNING_OVERRIDES),
    )


def _not_indicated_card(a: Assessment, policy: Policy, ctx: CardContext) -> Card:
    card_id = str(uuid.uuid4())
    main = a.reasons[0]
    citation = policy.cite("severity_phq9_min" if main.kind is ReasonKind.SEVERITY_NOT_MET else "min_failed_trials")
    detail = [*_course_block(a), f"**{_product(ctx, policy)} does not appear indicated** under policy "
                                  f"*{policy.title}*:", ""]
    detail += [f"- {markdown_prose(r.text)}" for r in a.reasons]
    tr = a.treatment_resistance
    if tr.trials:
        detail += ["", "**Antidepressant trials in the last "
                   f"{policy.thresholds.trial_lookback_months} months:**"]
        detail += [f"- {_trial_line(t)} (`{markdown_code(', '.join(t.evidence), 500)}`)" for t in tr.trials]
    detail += _gaps_block(a)
    short = {ReasonKind.ANXIETY_WITHOUT_DEPRESSION: "anxiety alone is not an indication",
             ReasonKind.DEPRESSION_ABSENT: "no active major depression on record",
             ReasonKind.TREATMENT_RESISTANCE_NOT_MET: "treatment resistance not established",
             ReasonKind.SEVERITY_NOT_MET: "current PHQ-9 below the severity threshold"}.get(main.kind, main.text)
    suggestions = _remove_orders(ctx.orders, recommended=True)
    return Card(
        kind=CardKind.NOT_INDICATED,
        uuid=card_id,
        summary=_summary(f"{_product(ctx, policy)} not indicated: {short}"),
        detail="\n".join(detail),
        indicator=Indicator.WARNING,
        source=_source(citation),
        suggestions=suggestions or None,
        selectionBehavior=_removal_behaviour(suggestions),
        overrideReasons=_overrides(_NOT_INDICATED_OVERRIDES),
    )


def _candidate_card(a: Assessment, policy: Policy, ctx: CardContext) -> Card:
    card_id = str(uuid.uuid4())
    tr = a.treatment_resistance
    phq = a.severity.phq9
    detail = [
        *_course_block(a),
        f"**Criteria met** under policy *{policy.title}*: major depression, "
        f"{tr.failed_adequate_trials} failed adequate antidepressant trials"
        + (f", PHQ-9 {phq.value:g} on {phq.day.isoformat()}"
           + (f" ({markdown_prose(phq.note)})" if phq.note else "") if phq else "")
        + "; no contraindication documented.",
        "",
        "**Before and during each session (esketamine REMS / supervised setting):**",
        "- Certified healthcare setting; prescriber on site; pulse oximeter available (REMS)",
        f"- Blood pressure before dosing (above {_bp_limit(policy)}: weigh delaying) and about {_recheck(policy)} "
        "after (label)",
        f"- Monitor for at least {_monitoring(policy)} and until sedation, dissociation and respiratory depression "
        "resolve (REMS)",
        "- No driving until the next day after restful sleep (label)",
        "",
        _sources_line("S1", "S3"),
        "",
        "**Trials:**",
        *[f"- {_trial_line(t)} (`{markdown_code(', '.join(t.evidence), 500)}`)" for t in tr.trials],
    ]
    suggested = [w for w in a.workup if not w.required]
    if suggested:
        detail += ["", "**Suggested:**", *[f"- {markdown_prose(w.text)}" for w in suggested]]
    return Card(
        kind=CardKind.CRITERIA_MET,
        uuid=card_id,
        summary=_summary(f"{_product(ctx, policy)}: criteria met — REMS monitoring ≥{_monitoring(policy, short=True)}, "
                         f"BP before and ~{_recheck(policy, short=True)} after"),
        detail="\n".join(detail),
        indicator=Indicator.INFO,
        source=_source(None, cited_source("S3")),
    )


def _bp_limit(policy: Policy) -> str:
    """The label's pre-dose blood pressure guide, as the policy holds it ("140/90")."""
    return blood_pressure(policy.thresholds.bp_systolic_above, policy.thresholds.bp_diastolic_above)


def _monitoring(policy: Policy, *, short: bool = False) -> str:
    """The REMS observation period in words ("2 hours"; "2 h" for a summary), from the policy."""
    return duration(policy.thresholds.session_monitoring_minutes, short=short)


def _recheck(policy: Policy, *, short: bool = False) -> str:
    """When the label has blood pressure rechecked after the dose ("40 minutes"; "40 min"), from the policy."""
    return duration(policy.thresholds.session_bp_recheck_minutes, short=short)


def _session_reminders(policy: Policy) -> list[str]:
    return [f"- Blood pressure before each dose (above {_bp_limit(policy)}: weigh delaying) and about "
            f"{_recheck(policy)} after (label)",
            f"- Monitor at least {_monitoring(policy)}, until sedation, dissociation and respiratory depression "
            "resolve (REMS)"]


def _course_card_head(a: Assessment) -> tuple[str, Any]:
    course = a.course
    assert course is not None and course.current
    return course_summary(course), course


def _continue_card(a: Assessment, policy: Policy, ctx: CardContext) -> Card:
    line, course = _course_card_head(a)
    t = policy.thresholds
    if course.response is ResponseClass.NOT_YET_DUE:
        plan = (f"- Induction (weeks 1-{t.session_induction_weeks}) ends on {course.induction_end.isoformat()}: the "
                "label asks that the evidence of therapeutic benefit be evaluated then, to decide on continued "
                "treatment. A PHQ-9 at that visit documents it.")
    else:
        plan = ("- Maintenance: weekly in weeks 5-8, then every 2 weeks or weekly, at the least frequent dosing that "
                "maintains the response or remission (manufacturer's summary of the US label).")
    detail = [
        f"**{markdown_prose(line)}** — continue under policy *{policy.title}*.",
        "",
        f"- Indication when the course began: {markdown_prose(a.severity.explanation)}; "
        f"{markdown_prose(a.treatment_resistance.explanation)}",
        "- No contraindication documented now",
        plan,
        *_session_reminders(policy),
        "",
        _sources_line("S62", "S1", "S3"),
    ]
    suggested = [w for w in a.workup if not w.required]
    if suggested:
        detail += ["", "**Suggested:**", *[f"- {markdown_prose(w.text)}" for w in suggested]]
    return Card(
        kind=CardKind.COURSE_CONTINUES,
        uuid=str(uuid.uuid4()),
        summary=_summary(f"{line} — continue"),
        detail="\n".join(detail),
        indicator=Indicator.INFO,
        source=_source(policy.cite("session_induction_weeks")),
    )


def _reassess_card(a: Assessment, policy: Policy, ctx: CardContext) -> Card:
    line, course = _course_card_head(a)
    latest = course.latest_phq9
    detail = [
        f"**{markdown_prose(line)}** — reassess before continuing.",
        "",
        f"- Induction ended on {course.induction_end.isoformat()} with a "
        f"{'partial response' if course.response is ResponseClass.PARTIAL else 'fall of less than 25 %'}"
        + (f" (latest PHQ-9 {latest.value:g} on {latest.day.isoformat()}, `{markdown_code(latest.reference)}`)"
           if latest else ""),
        "- The label asks that the evidence of therapeutic benefit be evaluated at the end of induction to determine "
        "the need for continued treatment (manufacturer's summary of the US label).",
        "- Response is a PHQ-9 fall of at least 50 %, remission a PHQ-9 below 5 (CMS measures); under 25 % is no "
        "response (consensus definition).",
        "",
        _sources_line("S62", "S31", "S25"),
    ]
    return Card(
        kind=CardKind.COURSE_REASSESS,
        uuid=str(uuid.uuid4()),
        summary=_summary(f"{product_word(course.product)} course: {_reassess_phrase(course)} — reassess benefit"),
        detail="\n".join(detail),
        indicator=Indicator.WARNING,
        source=_source(policy.cite("session_induction_weeks")),
        overrideReasons=_overrides(("specialist-decision", "chart-data-incorrect", "benefit-outweighs-risk")),
    )


def _reassess_phrase(course: Any) -> str:
    b, latest = course.baseline_phq9, course.latest_phq9
    words = "partial response" if course.response is ResponseClass.PARTIAL else "no response"
    if b is None or latest is None or course.reduction is None:
        return words
    return f"PHQ-9 {b.value:g} \u2192 {latest.value:g} after induction ({words})"


def _dose_cards(a: Assessment, policy: Policy, ctx: CardContext) -> list[Card]:
    """An esketamine order whose dose per session is outside the label's (56 or 84 mg; 28 mg to start at 65 or
    older): a warning, never silence, whatever the verdict."""
    older = any(w.id is WarningId.OLDER_ADULT for w in a.warnings)
    t = policy.thresholds
    cards = []
    for order in ctx.orders:
        why = (esketamine_dose_outside_label(order.dose_mg, older, a.course, policy)
               if order.esketamine and order.dose_mg is not None else None)
        if why is None:
            continue
        cards.append(Card(
            kind=CardKind.DOSE_OUTSIDE_LABEL, uuid=str(uuid.uuid4()),
            summary=_summary(f"Esketamine dose outside the label: {why}"),
            detail="\n".join([f"The order `{markdown_code(order.reference)}` ({markdown_prose(order.name)}) states "
                              f"**{order.dose_mg:g} mg** per session.", "",
                              f"- Label dosing: day 1 {t.esketamine_dose_low_mg:g} mg "
                              f"({t.esketamine_older_start_mg:g} mg at {t.older_adult_age} or older), then "
                              f"{t.esketamine_dose_low_mg:g} or {t.esketamine_dose_high_mg:g} mg twice weekly in "
                              "weeks 1-4, weekly in weeks 5-8, then every 2 weeks or weekly.", "",
                              _sources_line("S8")]),
            indicator=Indicator.WARNING, source=_source(policy.cite("esketamine_dose_low_mg")),
            overrideReasons=_overrides(("specialist-decision", "chart-data-incorrect"))))
    return cards


def _compounded_card(order: KetamineOrder, a: Assessment, ctx: CardContext) -> Card:
    card_id = str(uuid.uuid4())
    how = [w for w, flag in (("compounded", order.compounded), ("oral", order.oral),
                             ("sublingual", order.sublingual), ("at-home", order.at_home)) if flag]
    return Card(
        kind=CardKind.FDA_WARNS,
        uuid=card_id,
        summary=_summary(f"{'/'.join(how).capitalize()} ketamine: FDA warns of risks outside monitored settings"),
        detail="\n".join([
            f"The order `{markdown_code(order.reference)}` ({markdown_prose(order.name)}) reads as "
            f"**{', '.join(how)}** ketamine.",
            "",
            "The FDA (10 October 2023) warns that compounded ketamine products, including oral formulations, are "
            "not FDA-approved for any psychiatric disorder, are not under the esketamine REMS, and that use at "
            "home without on-site monitoring adds risk: abuse and misuse, increased blood pressure, psychiatric "
            "events, respiratory depression and bladder problems.",
        ]),
        indicator=Indicator.WARNING,
        source=_source(None, cited_source("S13")),
        suggestions=_remove_orders([order], recommended=False),
        selectionBehavior="at-most-one",
        overrideReasons=_overrides(_FDA_OVERRIDES),
    )


def _cautions_card(a: Assessment, policy: Policy, ctx: CardContext) -> Card | None:
    if not a.warnings:
        return None
    card_id = str(uuid.uuid4())
    first = a.warnings[0]
    detail = ["**Cautions:**", ""]
    for w in a.warnings:
        detail.append(f"- {markdown_prose(w.text)}")
        detail.extend(_evidence_lines(w.evidence))
    caution_ids = [w.contraindication for w in a.warnings if w.contraindication is not None]
    citation = policy.contraindications[caution_ids[0]].citation if caution_ids else None
    if citation is None and first.id is WarningId.CNS_DEPRESSANT_SEDATION:
        # The label's drug interactions (US PI §7.1 [S1, S53]) are the source of this warning, not the age rule.
        citation = Citation((cited_source("S1"), cited_source("S53")), True, "SPRAVATO PI §7.1 drug interactions")
    return Card(
        kind=CardKind.CAUTION,
        uuid=card_id,
        summary=_summary(f"Caution: {_warning_phrase(first, policy)}" + (f" (+{len(a.warnings) - 1} more)"
                                                                 if len(a.warnings) > 1 else "")),
        detail="\n".join(detail),
        indicator=Indicator.WARNING,
        source=_source(citation or policy.cite("older_adult_age")),
        overrideReasons=_overrides(_CAUTION_OVERRIDES),
    )


def order_cards(a: Assessment, policy: Policy, ctx: CardContext) -> list[Card]:
    """The cards for a ketamine/esketamine order (order-select, order-sign)."""
    builders = {
        Verdict.CONTRAINDICATED: _contraindicated_card,
        Verdict.NOT_INDICATED: _not_indicated_card,
        Verdict.NEEDS_WORKUP: _workup_card,
        Verdict.CANDIDATE: _candidate_card,
        Verdict.CONTINUE: _continue_card,
        Verdict.REASSESS: _reassess_card,
    }
    cards = [builders[a.verdict](a, policy, ctx)]
    cards += [_compounded_card(o, a, ctx) for o in ctx.orders if o.outside_label]
    cards += _dose_cards(a, policy, ctx)
    if a.verdict is not Verdict.CONTRAINDICATED and (caution := _cautions_card(a, policy, ctx)) is not None:
        cards.append(caution)
    # Critical first, then warnings, then information: a caution is never below an info card.
    cards.sort(key=lambda c: _INDICATOR_ORDER[c.indicator])
    return [_with_assessment(c, a, ctx) for c in cards]


def assessment_extension(a: Assessment) -> dict[str, Any]:
    """What every card carries of the assessment it renders, so EHR analytics and tests can check agreement."""
    found: dict[str, Any] = {"verdict": a.verdict.value, "policy": a.policy, "as_of": a.as_of.isoformat(),
                             "treatment_resistance": a.treatment_resistance.status.value,
                             "contraindications": {cid.value: f.status.value
                                                   for cid, f in a.contraindications.items()}}
    if a.course is not None:
        # CDS Hooks allows no null element: a course's unknown phase or dose count is left out.
        course = {"current": a.course.current, "phase": a.course.phase.value if a.course.phase else None,
                  "response": a.course.response.value, "doses": a.course.doses}
        found["course"] = {k: v for k, v in course.items() if v is not None}
    return {"ketamine-cds": found}


def _with_assessment(card: Card, a: Assessment, ctx: CardContext) -> Card:
    card.extension = assessment_extension(a)
    card.links = _link(ctx, a, card)
    return card


def patient_view_card(a: Assessment, policy: Policy, ctx: CardContext) -> Card | None:
    """Silent unless ketamine therapy is active (monitoring reminder) or, when enabled, TRD is met."""
    card = _patient_view_card(a, policy, ctx)
    return None if card is None else _with_assessment(card, a, ctx)


def _patient_view_card(a: Assessment, policy: Policy, ctx: CardContext) -> Card | None:
    # Active therapy is decided once, by the rules (the current course).
    card_id = str(uuid.uuid4())
    if a.course is not None and a.course.current:
        line = course_summary(a.course)
        verdict = {Verdict.CONTINUE: "continue", Verdict.REASSESS: "reassess benefit",
                   Verdict.CONTRAINDICATED: "contraindication on record",
                   Verdict.NEEDS_WORKUP: "work-up needed", Verdict.NOT_INDICATED: "indication not established"}
        return Card(
            kind=CardKind.ACTIVE_THERAPY,
            uuid=card_id,
            summary=_summary(f"{line} — {verdict.get(a.verdict, a.verdict.value)}"),
            detail="\n".join([
                f"**{markdown_prose(line)}**",
                "",
                *[f"- {markdown_prose(r.text)}" for r in a.reasons],
                *_session_reminders(policy),
                "- Repeat the PHQ-9 to follow the response",
                "",
                _sources_line("S62", "S1", "S3"),
            ]),
            indicator=Indicator.WARNING if a.verdict in (Verdict.CONTRAINDICATED, Verdict.REASSESS,
                                                         Verdict.NEEDS_WORKUP, Verdict.NOT_INDICATED)
            else Indicator.INFO,
            source=_source(policy.cite("session_induction_weeks")),
        )
    if policy.patient_view_notify_trd and a.treatment_resistance.status is Criterion.MET:
        return Card(
            kind=CardKind.TREATMENT_RESISTANT,
            uuid=card_id,
            summary=_summary(f"Treatment-resistant depression: {a.treatment_resistance.failed_adequate_trials} "
                             "failed adequate antidepressant trials"),
            detail=markdown_prose(a.treatment_resistance.explanation),
            indicator=Indicator.INFO,
            source=_source(policy.cite("min_failed_trials")),
        )
    return None
