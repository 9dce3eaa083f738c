"""Reading FHIR input: Bundles of any type, NDJSON, folders of resources, CDS Hooks prefetch objects.

Each entry the rules use is validated on its own with ``fhir.resources.R4B`` when the mapping first needs it
(:meth:`ResourcePool.valid`): an invalid entry is skipped and reported, never fatal, and one bad entry never costs
the rest of the Bundle. Entries the rules never read (labs, unrelated drugs) are not validated at all: validation
costs about 30x ``json.loads`` and would dominate the time of an assessment.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .facts import DataDomain, DataGap, GapReason, ResourceType, SkippedEntry

# The resource types the rules read; everything else in the input is ignored without being validated.
USED_TYPES = frozenset(t.value for t in ResourceType)


class InputError(Exception):
    """The input cannot be read as FHIR at all (missing file, not JSON, no FHIR resources)."""


@dataclass(slots=True)
class ResourcePool:
    """Valid resources of the types we use, indexed for reference resolution, plus what was skipped."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)
    gaps: list[DataGap] = field(default_factory=list)
    by_reference: dict[str, dict[str, Any]] = field(default_factory=dict)
    _by_type: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _where: dict[int, str] = field(default_factory=dict)
    _checked: dict[int, bool] = field(default_factory=dict)
    #: Whether validation results go through the shared cache: a face that sees the same resources again (the card on
    #: order-select, order-sign, re-sign) gains; one that sees each resource once (``screen``) would only pay for the
    #: key of every resource.
    cache_validation: bool = True

    def add(self, resource: Any, where: str, full_url: str | None = None) -> None:
        if not isinstance(resource, Mapping):
            self.skipped.append(SkippedEntry(where, "?", "not a JSON object"))
            return
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or rtype not in USED_TYPES:
            return
        res = dict(resource)
        if not isinstance(full_url, str):
            full_url = None
        if not res.get("id") and full_url:
            # Transaction Bundles name new resources by fullUrl (urn:uuid:…) only.
            res["id"] = full_url.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
        if not isinstance(res.get("id"), str) or not res["id"]:
            self.skipped.append(SkippedEntry(where, str(rtype), "resource has no id"))
            return
        ref = f"{rtype}/{res['id']}"
        if ref in self.by_reference:
            return  # the same resource seen twice (a page repeated, an _include): keep the first
        self.by_reference[ref] = res
        if full_url:
            self.by_reference[full_url] = res
        self.resources.append(res)
        self._by_type.setdefault(str(rtype), []).append(res)
        self._where[id(res)] = where

    def valid(self, resource: dict[str, Any]) -> bool:
        """Validate one entry with the R4B models (once); an invalid entry is reported in ``skipped``."""
        key = id(resource)
        if key not in self._checked:
            problem = validate_resource(resource, cached=self.cache_validation)
            self._checked[key] = problem is None
            if problem is not None:
                where = self._where.get(key, f"{resource.get('resourceType')}/{resource.get('id')}")
                self.skipped.append(SkippedEntry(where, str(resource.get("resourceType")), problem))
        return self._checked[key]

    def of_type(self, rtype: ResourceType) -> Iterator[dict[str, Any]]:
        return iter(self._by_type.get(rtype.value, ()))

    def resolve(self, reference: str | None, container: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """A literal reference: ``#contained``, ``Type/id``, an absolute URL ending in Type/id, or a urn:uuid."""
        if not reference:
            return None
        if reference.startswith("#") and container is not None:
            contained_list = container.get("contained")
            for contained in contained_list if isinstance(contained_list, list) else []:
                if isinstance(contained, Mapping) and contained.get("id") == reference[1:]:
                    return dict(contained)
            return None
        if not isinstance(reference, str):
            return None
        if reference in self.by_reference:
            return self.by_reference[reference]
        parts = reference.rstrip("/").split("/")
        if len(parts) >= 2:
            return self.by_reference.get(f"{parts[-2]}/{parts[-1]}")
        return None


_VALIDATION_CACHE: OrderedDict[bytes, str | None] = OrderedDict()
_VALIDATION_CACHE_SIZE = 50_000


def clear_validation_cache() -> None:
    _VALIDATION_CACHE.clear()


def validate_resource(resource: Mapping[str, Any], cached: bool = True) -> str | None:
    """None when the resource is valid FHIR R4 (checked with the R4B models), else a short reason.

    Validation is a pure function of the resource's content, so results are kept in a bounded LRU keyed by a
    BLAKE2b digest of the serialised JSON: the same patient's resources arrive again on order-select, order-sign
    and re-sign, and hashing costs a fraction of validating. ``cached=False`` validates without the cache (the same
    answer): for a caller that sees each resource once, where the key would cost about 7 % of an assessment and
    never be found.
    """
    if not cached:
        return _validate(resource)
    try:
        key = hashlib.blake2b(json.dumps(resource, separators=(",", ":")).encode(), digest_size=16).digest()
    except (TypeError, ValueError):
        return _validate(resource)
    if key in _VALIDATION_CACHE:
        _VALIDATION_CACHE.move_to_end(key)
        return _VALIDATION_CACHE[key]
    result = _validate(resource)
    _VALIDATION_CACHE[key] = result
    if len(_VALIDATION_CACHE) > _VALIDATION_CACHE_SIZE:
        _VALIDATION_CACHE.popitem(last=False)
    return result


def _validate(resource: Mapping[str, Any]) -> str | None:
    # Imported here, not at the top: importing the rules loads no pydantic; the first validation pays for it
    # (about 0.4 s with the first model).
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    try:
        get_fhir_model_class(str(resource["resourceType"])).model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return f"invalid {resource['resourceType']}: {loc} {first.get('msg', '')}".strip()
    except (KeyError, ValueError, TypeError) as exc:
        return f"invalid resource: {exc}"
    return None


@dataclass(frozen=True, slots=True)
class SearchScope:
    """The search a Bundle answers: its resource type, data domains and key (a prefetch key, a client query)."""

    resource_type: ResourceType
    domains: frozenset[DataDomain]
    key: str = ""


# What a searchset's OperationOutcome says when the results it came with are not all there (issue #20): suppressed
# (access, consent), cut (a limit, a time-out), not expressible (a code the server cannot search by).
_INCOMPLETE_WORDS = re.compile(
    r"suppress|withheld|redact|truncat|\bcut\b|incomplete|partial|limit|too many|exceed|not (be )?(expressible|"
    r"supported|available)|cannot be (expressed|searched)|unable to (express|search)|omitted|not all\b", re.I)


def incomplete_search_notice(bundle: Mapping[str, Any]) -> str | None:
    """What a searchset Bundle's own OperationOutcome entry (``search.mode`` ``outcome``, severity warning or error)
    says about results suppressed, cut or not expressible; None when it says nothing of the kind."""
    found = _search_notice(bundle)
    return None if found is None else found[0]


def _search_notice(bundle: Mapping[str, Any]) -> tuple[str, bool] | None:
    """The notice of :func:`incomplete_search_notice`, and whether an issue saying so is of severity error or fatal:
    FHIR R4 IssueSeverity's "sufficiently important to cause the action to fail", where a warning's "is not
    important enough to cause the action to fail"."""
    if bundle.get("type") != "searchset":
        return None
    notices: list[tuple[str, bool]] = []
    for entry in bundle.get("entry") or []:
        if not isinstance(entry, Mapping):
            continue
        search = entry.get("search")
        resource = entry.get("resource")
        if not (isinstance(search, Mapping) and search.get("mode") == "outcome" and isinstance(resource, Mapping)
                and resource.get("resourceType") == "OperationOutcome"):
            continue
        for issue in resource.get("issue") or []:
            if not isinstance(issue, Mapping) or issue.get("severity") not in ("warning", "error", "fatal"):
                continue
            words = " ".join(_issue_words(issue))
            if _INCOMPLETE_WORDS.search(words):
                notices.append((words.strip()[:200], issue.get("severity") in ("error", "fatal")))
    if not notices:
        return None
    return next((n for n in notices if n[1]), notices[0])


def _issue_words(issue: Mapping[str, Any]) -> list[str]:
    details = issue.get("details")
    details = details if isinstance(details, Mapping) else {}
    found = [issue.get("diagnostics"), details.get("text")]
    found += [c.get("display") for c in details.get("coding") or [] if isinstance(c, Mapping)]
    return [w for w in found if isinstance(w, str)]


def _incomplete_gaps(pool: ResourcePool, bundle: Mapping[str, Any], notice: str, failed: bool,
                     scope: SearchScope | None) -> None:
    """The search's type is a gap; in a file (no scope known), the types that Bundle holds (every searched type when
    it holds none: nothing in it says what is missing). A search the server says failed (severity error or fatal)
    is a server error, as a failed fetch is; one it says answered with results withheld (a warning) is incomplete:
    the data that arrived stands and its rules are unknown, and a required search so answered is no 412."""
    from .searches import SEARCHED_TYPES, domains_of

    if scope is not None:
        scopes = [scope]
    else:
        held = {r.get("resourceType") for e in bundle.get("entry") or [] if isinstance(e, Mapping)
                and isinstance(r := e.get("resource"), Mapping)}
        # The Patient is read, not searched: an outcome of a search says nothing about it.
        searched = [t for t in SEARCHED_TYPES if t is not ResourceType.PATIENT]
        types = [t for t in searched if t.value in held] or searched
        scopes = [SearchScope(t, domains_of(t)) for t in types]
    for s in scopes:
        reason = GapReason.SERVER_ERROR if failed else GapReason.INCOMPLETE
        gap = DataGap(s.resource_type, reason, f"the server says: {notice}", s.domains, s.key)
        if gap not in pool.gaps:
            pool.gaps.append(gap)


def add_json(pool: ResourcePool, data: Any, where: str, scope: SearchScope | None = None) -> None:
    """Add a parsed JSON value: a Bundle, a single resource, or a CDS Hooks prefetch object. ``scope``: the search
    the value answers, when known (a prefetch key)."""
    if isinstance(data, Mapping) and "resourceType" not in data:
        add_prefetch(pool, data, where)
        return
    if isinstance(data, Mapping) and data.get("resourceType") == "Bundle":
        add_bundle(pool, data, where, scope)
        return
    if isinstance(data, Mapping) and data.get("resourceType") == "OperationOutcome":
        return
    pool.add(data, where)


def add_bundle(pool: ResourcePool, bundle: Mapping[str, Any], where: str, scope: SearchScope | None = None) -> None:
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        pool.skipped.append(SkippedEntry(where, "Bundle", "Bundle.entry is not a list"))
        return
    if (notice := _search_notice(bundle)) is not None:
        # A search that says it is incomplete is a gap, as a failed search is (issue #12 §3, issue #20).
        _incomplete_gaps(pool, bundle, notice[0], notice[1], scope)
    for i, entry in enumerate(entries):
        here = f"{where} entry[{i}]"
        if not isinstance(entry, Mapping):
            pool.skipped.append(SkippedEntry(here, "?", "entry is not a JSON object"))
            continue
        resource = entry.get("resource")
        if resource is None:
            continue
        if isinstance(resource, Mapping) and resource.get("resourceType") == "Bundle":
            add_bundle(pool, resource, here)
            continue
        pool.add(resource, here, entry.get("fullUrl"))


def add_prefetch(pool: ResourcePool, prefetch: Mapping[str, Any], where: str) -> None:
    """A CDS Hooks prefetch object: each value a resource, a Bundle, an OperationOutcome, or null."""
    for key, value in prefetch.items():
        if value is None:
            continue
        add_json(pool, value, f"{where} prefetch[{key}]") if isinstance(value, Mapping) else pool.skipped.append(
            SkippedEntry(f"{where} prefetch[{key}]", "?", "prefetch value is not a JSON object")
        )


def read_path(path: Path) -> ResourcePool:
    """Read a file (.json Bundle/resource/prefetch, .ndjson) or a folder of them."""
    pool = ResourcePool()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    files: Iterable[Path]
    files = sorted(p for p in path.rglob("*") if p.suffix in (".json", ".ndjson") or p.name.endswith(".ndjson.gz")) \
        if path.is_dir() else [path]
    seen_any = False
    for file in files:
        if file.name.endswith(".expected.json"):
            continue
        if path.is_dir() and file.suffix == ".json" and _is_bulk_manifest(file):
            continue  # a Bulk export's manifest is metadata, not FHIR data
        seen_any |= _read_file(pool, file)
    if not seen_any:
        raise InputError(f"{path}: no FHIR resources found")
    return pool


def _is_bulk_manifest(file: Path) -> bool:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, Mapping) and "transactionTime" in data and "output" in data and "resourceType" not in data


def _read_file(pool: ResourcePool, file: Path) -> bool:
    try:
        raw = gzip.decompress(file.read_bytes()) if file.name.endswith(".gz") else file.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"{file}: cannot read ({exc.__class__.__name__})") from exc
    if file.suffix == ".ndjson" or file.name.endswith(".ndjson.gz"):
        found = False
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                pool.skipped.append(SkippedEntry(f"{file.name}:{n}", "?", f"not JSON: {exc.msg}"))
                continue
            if not (isinstance(data, Mapping) and isinstance(data.get("resourceType"), str)):
                # An NDJSON line is one resource: anything else (a Bulk export's log.ndjson) is not FHIR data.
                continue
            found = True
            add_json(pool, data, f"{file.name}:{n}")
        return found
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{file}: not JSON ({exc.msg} at line {exc.lineno})") from exc
    if not _looks_like_fhir(data):
        raise InputError(f"{file}: not a FHIR resource, Bundle or prefetch object")
    add_json(pool, data, file.name)
    return True


def _looks_like_fhir(data: Any) -> bool:
    if not isinstance(data, Mapping):
        return False
    if isinstance(data.get("resourceType"), str):
        return True
    # A prefetch object: every value a resource or null.
    return bool(data) and all(v is None or (isinstance(v, Mapping) and "resourceType" in v) for v in data.values())


def unresolved_medication_references(pool: ResourcePool) -> list[str]:
    """``Medication/{id}`` of each Medication that a MedicationStatement, MedicationRequest or MedicationAdministration
    references and the pool does not hold (neither contained, nor included, nor in the input): to be read from the
    server."""
    missing: dict[str, None] = {}
    for rtype in (ResourceType.MEDICATION_STATEMENT, ResourceType.MEDICATION_REQUEST,
                  ResourceType.MEDICATION_ADMINISTRATION, ResourceType.MEDICATION_DISPENSE):
        for res in pool.of_type(rtype):
            ref = res.get("medicationReference")
            target = ref.get("reference") if isinstance(ref, Mapping) else None
            if not isinstance(target, str) or not target or target.startswith("#") or pool.resolve(target, res):
                continue
            parts = target.split("/")
            # Only relative references are read, on the same server: an absolute one may name another server's
            # Medication/1, and the token never goes elsewhere.
            if len(parts) == 2 and parts[0] == "Medication" and parts[1]:
                missing[f"Medication/{quote(parts[-1], safe='')}"] = None
    return list(missing)

