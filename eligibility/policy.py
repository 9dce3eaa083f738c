"""Policies: the thresholds and contraindication modes the rules apply, loaded from TOML data files.

A policy that leaves a threshold out, or gives one without a source, is refused at load time: every number the
rules use must be traceable to a citation (or openly marked as a local choice).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .dates import months_before
from .model import ContraindicationId, Mode


class PolicyError(ValueError):
    """A policy file is missing, malformed, or leaves a threshold uncited."""


@dataclass(frozen=True, slots=True)
class Source:
    id: str
    label: str
    url: str
    #: False for a claim with no primary source (clinical-sources.md: NOT FOUND) or a local choice.
    primary: bool = True


@dataclass(frozen=True, slots=True)
class Citation:
    sources: tuple[Source, ...]
    verified: bool
    note: str


@dataclass(frozen=True, slots=True)
class Thresholds:
    severity_phq9_min: float
    severity_window_days: int
    trial_lookback_months: int
    trial_min_weeks: float
    min_failed_trials: int
    response_max_fraction: float
    remission_below: float
    baseline_days_before_start: int
    baseline_days_after_start: int
    followup_days_after_end: int
    course_merge_gap_days: int
    bp_window_days: int
    bp_systolic_above: float
    bp_diastolic_above: float
    bp_severe_systolic: float
    bp_severe_diastolic: float
    recent_mi_days: int
    drug_screen_window_days: int
    pregnancy_test_window_days: int
    pregnancy_lookback_days: int
    older_adult_age: int
    phq9_item9_warning_above: float
    # Treatment sessions (appointment-book, encounter-discharge).
    session_monitoring_minutes: float
    session_dose_minutes: float
    session_bp_systolic_above: float
    session_bp_diastolic_above: float
    session_bp_days: int
    session_bp_recheck_minutes: float
    session_induction_weeks: int
    session_max_per_week_induction: int
    session_max_per_week_after_induction: int
    rems_form_days: int
    # The ketamine/esketamine course (issue #23).
    course_continuity_days: int
    partial_response_min_reduction: float
    esketamine_dose_low_mg: float
    esketamine_dose_high_mg: float
    esketamine_older_start_mg: float


@dataclass(frozen=True, slots=True)
class ContraindicationRule:
    id: ContraindicationId
    mode: Mode
    citation: Citation


@dataclass(frozen=True, slots=True)
class Policy:
    id: str
    title: str
    summary: str
    product: str
    thresholds: Thresholds
    citations: dict[str, Citation]
    contraindications: dict[ContraindicationId, ContraindicationRule]
    dose_floors_mg: dict[str, float]
    dose_floor_citation: Citation
    patient_view_notify_trd: bool

    def cite(self, threshold: str) -> Citation:
        return self.citations[threshold]

    def observation_horizon(self, as_of: dt.date) -> dt.date:
        """The earliest day any rule of this policy reads an Observation (a trial baseline at the lookback edge)."""
        t = self.thresholds
        trial_edge = months_before(as_of, t.trial_lookback_months) - dt.timedelta(days=t.baseline_days_before_start)
        windows = (t.bp_window_days, t.severity_window_days, t.drug_screen_window_days, t.pregnancy_test_window_days)
        return min(trial_edge, as_of - dt.timedelta(days=max(windows)))


    def blood_pressure_horizon(self, as_of: dt.date) -> dt.date:
        """The earliest blood pressure read: the BP rule's window, or the 12 months the review's chart shows."""
        return as_of - dt.timedelta(days=max(self.thresholds.bp_window_days, BP_CHART_DAYS))


#: The review page charts blood pressure over the last 12 months.
BP_CHART_DAYS = 365
_THRESHOLD_NAMES = tuple(Thresholds.__dataclass_fields__)


def _text(name: str) -> str:
    return resources.files("eligibility").joinpath("policies", name).read_text(encoding="utf-8")


@cache
def _sources() -> dict[str, Source]:
    data = tomllib.loads(_text("sources.toml"))
    return {sid: Source(sid, d["label"], d["url"], bool(d.get("primary", True))) for sid, d in data.items()}


def cited_source(source_id: str) -> Source:
    """A source of ``sources.toml`` by its id (the IDs of shared/reference/clinical.md §9)."""
    try:
        return _sources()[source_id]
    except KeyError as exc:
        raise PolicyError(f"unknown source {source_id}") from exc


def _citation(where: str, d: dict[str, Any]) -> Citation:
    ids = d.get("source")
    if not isinstance(ids, list) or not ids:
        raise PolicyError(f"{where}: no source cited")
    sources = _sources()
    unknown = [s for s in ids if s not in sources]
    if unknown:
        raise PolicyError(f"{where}: unknown source {', '.join(unknown)}")
    return Citation(tuple(sources[s] for s in ids), bool(d.get("verified", False)), str(d.get("note", "")))


def available_policies() -> list[str]:
    names = resources.files("eligibility").joinpath("policies").iterdir()
    return sorted(
        p.name.removesuffix(".toml")
        for p in names
        if p.name.endswith(".toml") and p.name not in ("sources.toml", "dose_floors.toml")
    )


@cache
def load_policy(policy_id: str = "default") -> Policy:
    """One of the shipped policies, by id."""
    if policy_id not in available_policies():
        raise PolicyError(f"unknown policy {policy_id!r}; choose one of {', '.join(available_policies())}")
    return parse_policy(_text(f"{policy_id}.toml"), policy_id)


def load_policy_file(path: Path) -> Policy:
    """A site's own policy file, in the same format as the shipped ones."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read ({exc.__class__.__name__})") from exc
    return parse_policy(text, path.stem)


def _merged(data: dict[str, Any], where: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A policy that ``extends`` another states only what differs: thresholds, contraindication rules, dose floors
    and options override the base's one by one (so a shared citation is edited once, in the base)."""
    base_id = data.get("extends")
    if base_id is None:
        return data
    if not isinstance(base_id, str) or base_id not in available_policies():
        raise PolicyError(f"{where}: extends unknown policy {base_id!r}")
    if base_id in seen:
        raise PolicyError(f"{where}: policies extend each other in a cycle ({' -> '.join((*seen, base_id))})")
    base = _merged(tomllib.loads(_text(f"{base_id}.toml")), base_id, (*seen, base_id))
    merged = {**base, **data}
    del merged["extends"]
    for section in ("thresholds", "contraindications", "dose_floors_mg", "options"):
        merged[section] = {**(base.get(section) or {}), **(data.get(section) or {})}
    return merged


def parse_policy(text: str, where: str) -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{where}: not valid TOML ({exc})") from exc
    data = _merged(data, where, (str(data.get("id") or where),))
    raw_thresholds = data.get("thresholds") or {}
    missing = [n for n in _THRESHOLD_NAMES if n not in raw_thresholds]
    if missing:
        raise PolicyError(f"{where}: thresholds missing: {', '.join(missing)}")
    citations = {n: _citation(f"{where} thresholds.{n}", raw_thresholds[n]) for n in _THRESHOLD_NAMES}
    values: dict[str, Any] = {}
    for name in _THRESHOLD_NAMES:
        value = raw_thresholds[name].get("value")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise PolicyError(f"{where} thresholds.{name}: value must be a number")
        values[name] = value
    raw_ci = data.get("contraindications") or {}
    rules: dict[ContraindicationId, ContraindicationRule] = {}
    for cid in ContraindicationId:
        d = raw_ci.get(cid.value)
        if d is None:
            raise PolicyError(f"{where}: contraindication {cid.value} has no rule")
        try:
            mode = Mode(d.get("mode"))
        except ValueError as exc:
            raise PolicyError(f"{where} contraindications.{cid.value}: mode must be exclude or caution") from exc
        rules[cid] = ContraindicationRule(cid, mode, _citation(f"{where} contraindications.{cid.value}", d))
    floors = tomllib.loads(_text("dose_floors.toml"))
    floor_values = {k: float(v) for k, v in floors["floors_mg"].items()}
    floor_values.update({k: float(v) for k, v in (data.get("dose_floors_mg") or {}).items()})
    return Policy(
        id=str(data.get("id") or where),
        title=str(data.get("title", where)),
        summary=" ".join(str(data.get("summary", "")).split()),
        product=str(data.get("product", "ketamine or esketamine")),
        thresholds=Thresholds(**values),
        citations=citations,
        contraindications=rules,
        dose_floors_mg=floor_values,
        dose_floor_citation=_citation(f"{where} dose_floors", floors),
        patient_view_notify_trd=bool((data.get("options") or {}).get("patient_view_notify_trd", False)),
    )
