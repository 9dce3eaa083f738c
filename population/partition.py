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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
    buckets: tuple[Path, ...]
    medications: Path
    patients: int
    counts: dict[str, FileCounts] = field(default_factory=dict)
    #: The rule types with at least one valid line (what a mixed, patient-organised file holds).
    types_seen: tuple[str, ...] = ()


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
# ``subject`` when it is a non-empty object, else ``patient`` (``obj(r, "subject") or obj(r, "patient")``).
REF_SQL = """
CASE
  WHEN json_type(j, '$.subject') = 'OBJECT' AND json_extract(j, '$.subject')::VARCHAR <> '{}'
    THEN json_extract_string(j, '$.subject.reference')
  WHEN json_type(j, '$.patient') = 'OBJECT' THEN json_extract_string(j, '$.patient.reference')
END
"""
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
        WITH x AS (SELECT txt::JSON AS j), y AS (
            SELECT json_extract_string(j, '$.resourceType') AS rtype, json_extract_string(j, '$.id') AS rid,
                   {REF_SQL} AS ref FROM x)
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


def partition(
    files: Sequence[BulkFile],
    work: Path,
    buckets: int,
    horizon: dt.date,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> Partitioned:
    """Key the lines of ``files`` (the rule types' data files, in the order given) and write ``buckets`` Parquet
    buckets under ``work/parts``, plus the Medications (no patient: a table every bucket reads)."""
    work.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(work / "partition.duckdb"))
    try:
        spill = work / "spill"
        spill.mkdir(exist_ok=True)
        con.execute(f"SET temp_directory = {_quote(str(spill))}")
        con.execute("SET preserve_insertion_order = false")
        if memory_limit:
            con.execute(f"SET memory_limit = {_quote(memory_limit)}")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute("CREATE OR REPLACE TABLE raw (f INTEGER, n BIGINT, line VARCHAR)")
        encoding_errors: dict[int, int] = {}
        for i, f in enumerate(files):
            con.execute(f"""INSERT INTO raw SELECT {i}, ordinality, line FROM read_csv({_quote(str(f.path))},
                columns = {{'line': 'VARCHAR'}}, delim = '\\x01', quote = '', escape = '', header = false,
                auto_detect = false, strict_mode = false, compression = {_quote('gzip' if f.gzipped else 'none')},
                store_rejects = true, rejects_table = 'rejects_{i}', rejects_scan = 'scans_{i}') WITH ORDINALITY
                WHERE line IS NOT NULL AND trim(line) <> ''""")
            rejected = con.execute(f"SELECT count(*) FROM rejects_{i}").fetchone()
            if rejected and rejected[0]:
                encoding_errors[i] = _read_python(con, i, f)
            con.execute(f"DROP TABLE IF EXISTS rejects_{i}")
            con.execute(f"DROP TABLE IF EXISTS scans_{i}")
        types = ", ".join(_quote(t) for t in RULE_TYPES)
        con.execute(f"""CREATE OR REPLACE TABLE keyed AS
            WITH parsed AS (SELECT f, n, line, json_valid(line) AS ok FROM raw),
            typed AS (SELECT f, n, line, ok, CASE WHEN ok THEN line::JSON END AS j FROM parsed),
            fields AS (SELECT f, n, line, ok, j, json_extract_string(j, '$.resourceType') AS rtype,
                              json_extract_string(j, '$.id') AS rid, {REF_SQL} AS ref,
                              coalesce(json_extract_string(j, '$.effectiveDateTime'),
                                       json_extract_string(j, '$.effectivePeriod.start'),
                                       json_extract_string(j, '$.effectivePeriod.end'),
                                       json_extract_string(j, '$.effectiveInstant'),
                                       json_extract_string(j, '$.issued')) AS d
                       FROM typed)
            SELECT f, n, line, ok, rtype, rid, {KEY_SQL} AS pkey,
                   rtype = 'Observation' AND {_DAY_SQL} < DATE {_quote(horizon.isoformat())} AS old,
                   rtype IN ({types}) AS used
            FROM fields""")
        counts = _counts(con, files, encoding_errors)
        parts = work / "parts"
        con.execute(f"""COPY (SELECT hash(pkey) % {int(buckets)} AS bucket, pkey, f, n, line FROM keyed
                              WHERE ok AND used AND rtype <> 'Medication' AND pkey IS NOT NULL
                                AND NOT coalesce(old, false))
                        TO {_quote(str(parts))} (FORMAT parquet, PARTITION_BY (bucket), OVERWRITE_OR_IGNORE true)""")
        medications = work / "medications.parquet"
        con.execute(f"""COPY (SELECT rid AS id, f, n, line FROM keyed
                              WHERE ok AND rtype = 'Medication' AND rid IS NOT NULL ORDER BY f, n)
                        TO {_quote(str(medications))} (FORMAT parquet)""")
        row = con.execute("SELECT count(DISTINCT pkey) FROM keyed WHERE ok AND used AND pkey IS NOT NULL "
                          "AND rtype <> 'Medication'").fetchone()
        patients = int(row[0]) if row else 0
        seen = tuple(sorted(str(r[0]) for r in con.execute(
            "SELECT DISTINCT rtype FROM keyed WHERE ok AND used").fetchall()))
    finally:
        con.close()
    (work / "partition.duckdb").unlink(missing_ok=True)
    (work / "partition.duckdb.wal").unlink(missing_ok=True)
    found = tuple(sorted(parts.glob("bucket=*"), key=lambda p: int(p.name.split("=")[1]))) if parts.exists() else ()
    return Partitioned(found, medications, patients, counts, seen)


def _counts(con: duckdb.DuckDBPyConnection, files: Sequence[BulkFile],
            encoding: dict[int, int]) -> dict[str, FileCounts]:
    rows = con.execute("""SELECT f, count(*), count(*) FILTER (WHERE NOT ok),
                                 count(*) FILTER (WHERE ok AND used AND rtype <> 'Medication' AND pkey IS NULL),
                                 count(*) FILTER (WHERE ok AND coalesce(old, false)),
                                 count(*) FILTER (WHERE ok AND NOT coalesce(used, false))
                          FROM keyed GROUP BY f""").fetchall()
    by_index = {int(r[0]): r for r in rows}
    out: dict[str, FileCounts] = {}
    for i, f in enumerate(files):
        r = by_index.get(i)
        out[str(f.path)] = FileCounts(
            lines=int(r[1]) + encoding.get(i, 0) if r else encoding.get(i, 0),
            invalid_json=int(r[2]) if r else 0, invalid_encoding=encoding.get(i, 0),
            unattributed=int(r[3]) if r else 0, before_horizon=int(r[4]) if r else 0,
            other_types=int(r[5]) if r else 0)
    return out
