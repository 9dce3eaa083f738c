"""What a Bulk Data export folder holds: each file recognised by its content, never by its name.

A file's first line names its ``resourceType`` (``Patient.ndjson``, ``Patient.000.ndjson``, ``1.Patient.ndjson`` and
``.ndjson.gz`` are all the same to us). The export's manifest (``output``/``transactionTime``) and ``log.ndjson``
lines are metadata; ``error/`` holds OperationOutcomes; ``deleted/`` holds Bundles of deleted resources. Counts only:
nothing here reads or keeps a patient's data.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from fhir_mapping import SEARCHED_TYPES, ResourceType


class FileKind(StrEnum):
    DATA = "data"
    ERROR = "error"
    DELETED = "deleted"
    MANIFEST = "manifest"
    LOG = "log"
    OTHER = "other"


#: The resource types the rules read (the order-time searches' types and the Medications they reference).
RULE_TYPES: tuple[str, ...] = (*(t.value for t in SEARCHED_TYPES), ResourceType.MEDICATION.value)
#: A file of several types (``organizeOutputBy=Patient``: a Parameters header before each patient's resources).
MIXED = "*"
#: Read by the rules, but only ever as a supplement (PHQ-9 answers also come as Observations): no gap when absent.
SUPPLEMENTARY_TYPES = frozenset({ResourceType.QUESTIONNAIRE_RESPONSE.value, ResourceType.MEDICATION.value})


@dataclass(frozen=True, slots=True)
class BulkFile:
    path: Path
    kind: FileKind
    resource_type: str | None
    size: int
    mtime_ns: int
    first_line_sha256: str
    gzipped: bool

    @property
    def fingerprint(self) -> list[Any]:
        return [str(self.path), self.size, self.mtime_ns, self.first_line_sha256]


@dataclass(frozen=True, slots=True)
class Inventory:
    files: tuple[BulkFile, ...]
    #: The manifest's transactionTime and request, when a manifest was found.
    export: dict[str, Any] = field(default_factory=dict)
    #: OperationOutcome diagnostics of error/ files, by the resource type they name (or "*").
    errors: dict[str, int] = field(default_factory=dict)

    def data_files(self, types: Iterable[str] = RULE_TYPES) -> list[BulkFile]:
        wanted = {*types, MIXED}
        return [f for f in self.files if f.kind is FileKind.DATA and f.resource_type in wanted]

    def present_types(self) -> set[str]:
        return {f.resource_type for f in self.files if f.kind is FileKind.DATA and f.resource_type}

    def missing_types(self, seen_in_mixed: Iterable[str] = ()) -> list[str]:
        """The types the rules read that the export holds no file of (nor any line of, in its mixed files)."""
        present = self.present_types() | set(seen_in_mixed)
        return [t for t in RULE_TYPES if t not in present and t not in SUPPLEMENTARY_TYPES]

    def fingerprint(self) -> list[Any]:
        return [f.fingerprint for f in self.files] + [self.export.get("transactionTime")]


def _open_first_line(path: Path) -> tuple[bytes, bool]:
    gzipped = path.suffix == ".gz"
    try:
        with (gzip.open(path, "rb") if gzipped else path.open("rb")) as fh:
            return fh.readline(1 << 20), gzipped
    except (OSError, EOFError, gzip.BadGzipFile):
        return b"", gzipped


def _kind_of(path: Path, root: Path, first: Any) -> tuple[FileKind, str | None]:
    parts = {p.lower() for p in path.relative_to(root).parts[:-1]}
    if isinstance(first, dict):
        rtype = first.get("resourceType")
        if isinstance(rtype, str):
            if "error" in parts or (rtype == "OperationOutcome" and "error" in path.name.lower()):
                return FileKind.ERROR, rtype
            if "deleted" in parts:
                return FileKind.DELETED, rtype
            if rtype == "Parameters":
                return FileKind.DATA, MIXED
            return FileKind.DATA, rtype
        if "output" in first and "transactionTime" in first:
            return FileKind.MANIFEST, None
        return FileKind.LOG, None
    return FileKind.OTHER, None


def scan(folders: Sequence[Path]) -> Inventory:
    """Every file under the folders, sorted by path (the order every engine reads them in)."""
    found: list[BulkFile] = []
    export: dict[str, Any] = {}
    errors: dict[str, int] = {}
    for root in folders:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            line, gzipped = _open_first_line(path)
            first: Any = None
            text = line.strip()
            if path.suffix == ".json" and not gzipped:
                try:
                    first = json.loads(path.read_bytes())
                except (OSError, ValueError):
                    first = None
            else:
                try:
                    first = json.loads(text) if text else None
                except ValueError:
                    first = None
            kind, rtype = _kind_of(path, root, first)
            if kind is FileKind.MANIFEST and isinstance(first, dict):
                export = {k: first[k] for k in ("transactionTime", "request") if isinstance(first.get(k), str)}
            stat = path.stat()
            found.append(BulkFile(path, kind, rtype, stat.st_size, stat.st_mtime_ns,
                                  hashlib.sha256(text).hexdigest(), gzipped))
    for f in found:
        if f.kind is FileKind.ERROR:
            for rtype in _error_types(f):
                errors[rtype] = errors.get(rtype, 0) + 1
    return Inventory(tuple(found), export, errors)


def _error_types(f: BulkFile) -> list[str]:
    """The rule types an error file speaks of: those its diagnostics name, else every type ("*")."""
    try:
        with gzip.open(f.path, "rb") if f.gzipped else f.path.open("rb") as fh:
            raw = fh.read(1 << 22).decode("utf-8", "replace")
    except (OSError, EOFError, gzip.BadGzipFile):
        return ["*"]
    if not any(f'"{level}"' in raw for level in ("error", "fatal")):
        return []  # warnings only (a parameter ignored): the data is complete
    named = [t for t in RULE_TYPES if f"{t} " in raw or f"{t}:" in raw or f'"{t}"' in raw or raw.endswith(t)]
    return named or ["*"]
