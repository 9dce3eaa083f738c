"""Read the export with DuckDB (embedded), key every line by patient, and hash-partition into Parquet buckets.

Why DuckDB: it is embedded (no server to run), reads NDJSON and gzip natively, spills to disk past a memory limit,
and was the fastest engine on this machine for this step. The rules never run here: each bucket is assessed by the
same Python core as the card (``population.bucket``).

Every line keeps its file index and line number, so that a patient's resources are always read in (file, line)
order whatever the engine or the bucket count: identical input gives byte-identical output.
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from .inventory import RULE_TYPES, BulkFile


@dataclass(frozen=True, slots=True)
class FileCounts:
    lines: int = 0
    invalid_json: int = 0
    invalid_encoding: int = 0
    unattributed: int = 0
    before_horizon: int = 0
    other_types: int = 0


@dataclass(frozen=True, slots=True)
class Partitioned:
    """What partitioning a group of files found (its buckets are on disk, see :func:`bucket_parts`)."""

    #: Patient resources read (for the progress line's ETA only).
    patients: int
    counts: dict[str, FileCounts] = field(default_factory=dict)
    #: The rule types with at least one valid line (what a mixed, patient-organised file holds).
    types_seen: tuple[str, ...] = ()

    @staticmethod
    def merge(parts: Sequence[Partitioned]) -> Partitioned:
        """The whole export's, from its groups' (each file is in one group)."""
        return Partitioned(sum(p.patients for p in parts), {k: v for p in parts for k, v in p.counts.items()},
                           tuple(sorted({t for p in parts for t in p.types_seen})))


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# The SQL twin of ``fhir_mapping.patient_key`` (a Patient is keyed by its own id). Tested against it.
KEY_SQL = """
CASE
  WHEN rtype = 'Patient' THEN rid
  WHEN ref IS NULL OR ref = '' THEN NULL
  WHEN len(string_split(rtrim(ref, '/'), '/')) >= 2 AND string_split(rtrim(ref, '/'), '/')[-2] = 'Patient'
    THEN string_split(rtrim(ref, '/'), '/')[-1]
  ELSE regexp_extract(ref, '[^:]*$')
END
"""
# Every field the partition reads, extracted in one parse of the line (each ``json_extract`` of its own would parse
# the whole resource again): ``x[1]`` … ``x[11]`` below.
_PATHS = ("$.resourceType", "$.id", "$.subject", "$.subject.reference", "$.patient", "$.patient.reference",
          "$.effectiveDateTime", "$.effectivePeriod.start", "$.effectivePeriod.end", "$.effectiveInstant",
          "$.issued")
_EXTRACT = "json_extract({text}, [" + ", ".join(f"'{p}'" for p in _PATHS) + "])"
_RTYPE, _RID = "json_extract_string(x[1], '$')", "json_extract_string(x[2], '$')"
# ``subject`` when it is a non-empty object, else ``patient`` (``obj(r, "subject") or obj(r, "patient")``).
REF_SQL = """
CASE
  WHEN json_type(x[3]) = 'OBJECT' AND x[3]::VARCHAR <> '{}' THEN json_extract_string(x[4], '$')
  WHEN json_type(x[5]) = 'OBJECT' THEN json_extract_string(x[6], '$')
END
"""
# What the effective day of an Observation is read from, first present first.
_DAY_FIELDS = "coalesce(" + ", ".join(f"json_extract_string(x[{i}], '$')" for i in range(7, 12)) + ")"
# The day an Observation applies (``fhir_mapping.dates.effective_day``): only a value that parses is compared, and a
# line is dropped only when it is certainly older than every rule reads; anything doubtful is kept for the mapping.
_DAY_SQL = """
TRY_CAST(CASE length(regexp_extract(trim(d), '^\\d{4}(-\\d{2}(-\\d{2})?)?'))
  WHEN 4 THEN regexp_extract(trim(d), '^\\d{4}') || '-01-01'
  WHEN 7 THEN regexp_extract(trim(d), '^\\d{4}-\\d{2}') || '-01'
  WHEN 10 THEN regexp_extract(trim(d), '^\\d{4}-\\d{2}-\\d{2}')
END AS DATE)
"""


def key_sql_function(con: duckdb.DuckDBPyConnection) -> None:
    """``patient_key_of(json_text)``: the key as the partition step computes it (for tests against the mapping)."""
    con.execute(f"""CREATE OR REPLACE MACRO patient_key_of(txt) AS (
        WITH e AS (SELECT {_EXTRACT.format(text="txt")} AS x), y AS (
            SELECT {_RTYPE} AS rtype, {_RID} AS rid, {REF_SQL} AS ref FROM e)
        SELECT {KEY_SQL} FROM y)""")


def _read_python(con: duckdb.DuckDBPyConnection, index: int, f: BulkFile) -> int:
    """A file DuckDB's reader refused a line of (a byte that is not UTF-8): read it line by line here, so that the
    other lines keep their true line numbers; returns how many lines could not be decoded."""
    bad = 0
    rows: list[tuple[int, int, str]] = []
    with gzip.open(f.path, "rb") if f.gzipped else f.path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                bad += 1
                continue
            if line.strip():
                rows.append((index, n, line))
    con.execute("DELETE FROM raw WHERE f = ?", [index])
    if rows:
        con.executemany("INSERT INTO raw VALUES (?, ?, ?)", rows)
    return bad


def _connect(spill: Path, memory_limit: str | None, threads: int | None) -> duckdb.DuckDBPyConnection:
    """An in-memory database that spills to ``spill`` past the memory limit (a database file would write every
    table to disk even when it fits)."""
    con = duckdb.connect(":memory:")
    spill.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = {_quote(str(spill))}")
    con.execute("SET preserve_insertion_order = false")
    if memory_limit:
        con.execute(f"SET memory_limit = {_quote(memory_limit)}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("CREATE OR REPLACE TABLE raw (f INTEGER, n BIGINT, line VARCHAR)")
    return con


def _load(con: duckdb.DuckDBPyConnection, index: int, f: BulkFile) -> int:
    """The non-blank lines of one file into ``raw`` as (file index, line number, text); returns how many lines were
    not UTF-8 (counted, not loaded)."""
    con.execute(f"""INSERT INTO raw SELECT {index}, ordinality, line FROM read_csv({_quote(str(f.path))},
        columns = {{'line': 'VARCHAR'}}, delim = '\\x01', quote = '', escape = '', header = false,
        auto_detect = false, strict_mode = false, compression = {_quote('gzip' if f.gzipped else 'none')},
        store_rejects = true, rejects_table = 'rejects_{index}', rejects_scan = 'scans_{index}') WITH ORDINALITY
        WHERE line IS NOT NULL AND trim(line) <> ''""")
    rejected = con.execute(f"SELECT count(*) FROM rejects_{index}").fetchone()
    bad = _read_python(con, index, f) if rejected and rejected[0] else 0
    con.execute(f"DROP TABLE IF EXISTS rejects_{index}")
    con.execute(f"DROP TABLE IF EXISTS scans_{index}")
    return bad


def _key(con: duckdb.DuckDBPyConnection, horizon: dt.date) -> None:
    """``keyed``: every line of ``raw`` with its validity, type, patient key, and whether it is an Observation
    certainly older than the policy's horizon (pushed down: the rules never read it)."""
    types = ", ".join(_quote(t) for t in RULE_TYPES)
    con.execute(f"""CREATE OR REPLACE TABLE keyed AS
        WITH parsed AS (SELECT f, n, line, json_valid(line) AS ok FROM raw),
        extracted AS (SELECT f, n, line, ok, CASE WHEN ok THEN {_EXTRACT.format(text="line")} END AS x
                      FROM parsed),
        fields AS (SELECT f, n, line, ok, {_RTYPE} AS rtype, {_RID} AS rid, {REF_SQL} AS ref, {_DAY_FIELDS} AS d
                   FROM extracted)
        SELECT f, n, line, ok, rtype, rid, {KEY_SQL} AS pkey,
               rtype = 'Observation' AND {_DAY_SQL} < DATE {_quote(horizon.isoformat())} AS old,
               rtype IN ({types}) AS used
        FROM fields""")


# What a bucket reads: a valid line of a rule type, with a patient, not before the horizon (Medications apart).
_USABLE = "ok AND used AND rtype <> 'Medication' AND pkey IS NOT NULL AND NOT coalesce(old, false)"
_MEDICATIONS = "SELECT rid AS id, f, n, line FROM keyed WHERE ok AND rtype = 'Medication' AND rid IS NOT NULL"
_TYPES_SEEN = "SELECT DISTINCT rtype FROM keyed WHERE ok AND used"
_PATIENT_LINES = "SELECT count(*) FROM keyed WHERE ok AND rtype = 'Patient'"


def partition(
    files: Sequence[tuple[int, BulkFile]],
    work: Path,
    buckets: int,
    horizon: dt.date,
    memory_limit: str | None = None,
    threads: int | None = None,
    group: int = 0,
) -> Partitioned:
    """Key the lines of ``files`` (rule types' data files, each with its index in the whole export) and write them
    as this group's share of ``buckets`` Parquet buckets under ``work/parts/group=G``, plus the group's Medications
    (no patient: a table every bucket reads). Groups of files are partitioned side by side, one process each: a
    bucket is then the union of its part in every group (:func:`bucket_parts`)."""
    work.mkdir(parents=True, exist_ok=True)
    con = _connect(work / "spill" / f"group={group}", memory_limit, threads)
    try:
        encoding_errors = {i: _load(con, i, f) for i, f in files}
        _key(con, horizon)
        con.execute("DROP TABLE raw")  # every line is in ``keyed`` now: free its memory before writing
        counts = _counts(con, files, encoding_errors)
        parts = work / "parts" / f"group={group}"
        parts.parent.mkdir(exist_ok=True)
        con.execute(f"""COPY (SELECT hash(pkey) % {int(buckets)} AS bucket, pkey, f, n, line FROM keyed
                              WHERE {_USABLE})
                        TO {_quote(str(parts))} (FORMAT parquet, PARTITION_BY (bucket), OVERWRITE_OR_IGNORE true)""")
        medications = work / "medications" / f"group={group}.parquet"
        medications.parent.mkdir(exist_ok=True)
        con.execute(f"COPY ({_MEDICATIONS} ORDER BY f, n) TO {_quote(str(medications))} (FORMAT parquet)")
        row = con.execute(_PATIENT_LINES).fetchone()
        seen = tuple(sorted(str(r[0]) for r in con.execute(_TYPES_SEEN).fetchall()))
    finally:
        con.close()
    return Partitioned(int(row[0]) if row else 0, counts, seen)


_SETTING = re.compile(r"([0-9.]+) (bytes|KiB|MiB|GiB|TiB|PiB)")
_BINARY = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB")


def memory_share(limit: str, parts: int) -> str:
    """``limit`` (``--memory-limit``, read by DuckDB itself: 256MB, 2GiB, 50%…) split among ``parts`` DuckDBs that run
    at once, in bytes. ValueError when DuckDB does not take it as a memory limit."""
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET memory_limit = {_quote(limit)}")
        row = con.execute("SELECT current_setting('memory_limit')").fetchone()
    except duckdb.Error as exc:
        raise ValueError(limit) from exc
    finally:
        con.close()
    match = _SETTING.fullmatch(str(row[0]) if row else "")
    if match is None:
        raise ValueError(limit)
    return f"{int(float(match[1]) * 1024 ** _BINARY.index(match[2])) // max(1, parts)}B"


def bucket_indices(work: Path) -> list[int]:
    """The buckets that hold any line, in order."""
    return sorted({int(p.name.split("=")[1]) for p in (work / "parts").glob("group=*/bucket=*")})


def bucket_parts(work: Path, bucket: int) -> list[Path]:
    """The Parquet files of one bucket: its part of every group."""
    return sorted((work / "parts").glob(f"group=*/bucket={int(bucket)}/*.parquet"))


def medication_parts(work: Path) -> list[Path]:
    return sorted((work / "medications").glob("group=*.parquet"))


@dataclass(frozen=True, slots=True)
class KeyedFile:
    """One file read and keyed on its own (the Dask engine's unit of reading): the lines a bucket reads as Arrow
    columns ``pkey, f, n, line``, the file's Medications, its counts, the rule types it holds and how many Patient
    resources it has (for progress only)."""

    rows: Any
    medications: tuple[tuple[str, int, int, str], ...]
    counts: FileCounts
    types_seen: tuple[str, ...]
    patient_lines: int


def key_file(index: int, f: BulkFile, horizon: dt.date, work: Path, memory_limit: str | None = None) -> KeyedFile:
    """Read and key one file with the same SQL as ``partition`` (so both engines drop, count and key alike)."""
    con = _connect(work / "spill", memory_limit, 1)
    try:
        encoding = {index: _load(con, index, f)}
        _key(con, horizon)
        counts = _counts(con, [(index, f)], encoding)[str(f.path)]
        rows = con.sql(f"SELECT pkey, f, n, line FROM keyed WHERE {_USABLE}").to_arrow_table()
        medications = tuple((str(r[0]), int(r[1]), int(r[2]), str(r[3]))
                            for r in con.execute(f"{_MEDICATIONS} ORDER BY f, n").fetchall())
        seen = tuple(sorted(str(r[0]) for r in con.execute(_TYPES_SEEN).fetchall()))
        found = con.execute(_PATIENT_LINES).fetchone()
    finally:
        con.close()
    return KeyedFile(rows, medications, counts, seen, int(found[0]) if found else 0)


def _counts(con: duckdb.DuckDBPyConnection, files: Sequence[tuple[int, BulkFile]],
            encoding: dict[int, int]) -> dict[str, FileCounts]:
    rows = con.execute("""SELECT f, count(*), count(*) FILTER (WHERE NOT ok),
                                 count(*) FILTER (WHERE ok AND used AND rtype <> 'Medication' AND pkey IS NULL),
                                 count(*) FILTER (WHERE ok AND coalesce(old, false)),
                                 count(*) FILTER (WHERE ok AND NOT coalesce(used, false))
                          FROM keyed GROUP BY f""").fetchall()
    by_index = {int(r[0]): r for r in rows}
    out: dict[str, FileCounts] = {}
    for i, f in files:
        r = by_index.get(i)
        out[str(f.path)] = FileCounts(
            lines=int(r[1]) + encoding.get(i, 0) if r else encoding.get(i, 0),
            invalid_json=int(r[2]) if r else 0, invalid_encoding=encoding.get(i, 0),
            unattributed=int(r[3]) if r else 0, before_horizon=int(r[4]) if r else 0,
            other_types=int(r[5]) if r else 0)
    return out
