"""``--engine dask``: the screen's steps on a Dask cluster (dask + distributed).

Read and key: one task per file, by ``partition.key_file`` (the local engine's own SQL, so both engines key, drop and
count a line alike) → a P2P shuffle on the patient key into the run's buckets → ``map_partitions`` of
``bucket.assess_bucket`` (the card's core, with the Medications as one broadcast table) → each bucket's results come
back to this process, which writes them as the local engine does: one file per bucket, atomically, so that
``--resume`` skips what is done. Output is sorted afterwards by (priority, patient), so it is byte-identical to the
local engine's whatever the partitioning.

Why Dask: its workers are Python processes that run our core natively (no second implementation, no JVM), its P2P
shuffle is disk-backed, it recomputes what a lost worker held, and deployers exist for Kubernetes and HPC schedulers.
Every worker must read the export at the same path (a shared volume) and run the same ketamine-cds: checked at start
by comparing a fingerprint of the rule code on every worker with this process's.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import importlib.util
import ipaddress
import logging
import operator
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from eligibility import Policy
from fhir_mapping import DataGap

from .bucket import assess_bucket, prepare_worker, result_line
from .inventory import BulkFile
from .partition import FileCounts, KeyedFile, key_file

try:
    from distributed import Client, Future, LocalCluster, WorkerPlugin, as_completed
except ImportError as exc:  # pragma: no cover - exercised in an environment without the extra
    raise ImportError("the dask engine needs the dask extra", name="dask") from exc
for _module in ("dask.dataframe", "pandas", "pyarrow"):  # imported when first used: see ``_dataframes``
    if importlib.util.find_spec(_module) is None:  # pragma: no cover - an environment without the extra
        raise ImportError("the dask engine needs the dask extra", name=_module)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

_PACKAGES = ("eligibility", "fhir_mapping", "population")
_RESULT = "result"
#: A LocalCluster that listens on 127.0.0.1 only: no dashboard, and the scheduler's HTTP endpoint (metrics), which
#: would otherwise bind every interface on port 8787, on a free loopback port.
LOOPBACK: dict[str, Any] = {"host": "127.0.0.1", "dashboard_address": None,
                            "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"}}
#: How long to try reaching a ``--scheduler`` before saying it does not answer.
CONNECT_TIMEOUT = "10s"


class ClusterProblem(Exception):
    """The cluster cannot run this screen (unreachable, insecure, different code): one line for the user."""


def check_scheduler(address: str) -> None:
    """``tcp://`` only on this machine: patient data crosses the wire, so a scheduler elsewhere must be ``tls://``."""
    parts = urlsplit(address)
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or parts.port is None:
        raise ClusterProblem(f"--scheduler {address!r}: give tcp://HOST:PORT (this machine) or tls://HOST:PORT")
    if parts.scheme == "tcp" and not _loopback(parts.hostname):
        raise ClusterProblem(f"--scheduler {address!r}: a scheduler on another machine must be tls:// "
                             "(patient data would cross the network in clear over tcp://)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def code_fingerprint() -> dict[str, str]:
    """SHA-256 of each file of the rule code and data (eligibility, fhir_mapping, population): what must match on
    every worker for the cluster to give the card's answer."""
    found: dict[str, str] = {}
    for package in _PACKAGES:
        root = Path(__import__(package).__file__ or "").parent
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".py", ".toml", ".json",
                                                                                       ".csv", ".txt")
                           and "__pycache__" not in p.parts):
            found[str(path.relative_to(root.parent))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _fingerprint_on_worker() -> dict[str, str]:
    return code_fingerprint()  # looked up in the worker's own module: the code it actually runs


@dataclass(frozen=True, slots=True)
class ReadFiles:
    counts: dict[str, FileCounts]
    types_seen: tuple[str, ...]
    #: Patient resources in the export (for the progress line's ETA only).
    patients: int


def _key_task(index: int, f: BulkFile, horizon: dt.date, memory_limit: str | None) -> KeyedFile:
    with tempfile.TemporaryDirectory(prefix="ketamine-cds-screen-") as tmp:  # the worker's own spill space
        return key_file(index, f, horizon, Path(tmp), memory_limit)


def _dataframes() -> None:
    """Load dask.dataframe, pandas and pyarrow (about 2 s): the command does it while its LocalCluster's workers
    start (:func:`open_cluster`), a worker when its first task needs them."""
    import dask.dataframe  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401


def _schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([("pkey", pa.string()), ("f", pa.int32()), ("n", pa.int64()), ("line", pa.string())])


def _as_pandas(table: pa.Table) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    return table.cast(_schema()).to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)


def _frame(keyed: KeyedFile) -> pd.DataFrame:
    return _as_pandas(keyed.rows)


def _merge_medications(*files: tuple[tuple[str, int, int, str], ...]) -> dict[str, tuple[int, int, str]]:
    """Medication id → its first line in (file, line) order, as ``bucket.load_medications`` gives the local engine."""
    table: dict[str, tuple[int, int, str]] = {}
    for mid, f, n, line in sorted((m for meds in files for m in meds), key=lambda m: (m[1], m[2])):
        table.setdefault(mid, (f, n, line))
    return table


def _assess_partition(part: pd.DataFrame, medications: dict[str, tuple[int, int, str]], file_names: list[str],
                      gaps: list[DataGap], policy: Policy, as_of: dt.date, key: bytes | None) -> pd.DataFrame:
    import pandas as pd

    ordered = part.sort_values(["pkey", "f", "n"], kind="stable")
    rows = ((str(k), int(f), int(n), str(line)) for k, f, n, line in ordered.itertuples(index=False, name=None))
    results = assess_bucket(rows, file_names, medications, gaps, policy, as_of, key)
    return pd.DataFrame({_RESULT: [result_line(r) for r in results]},
                        dtype=object)


class _PrepareWorker(WorkerPlugin):
    """``bucket.prepare_worker`` on every worker, as the local engine's workers have it, and on any worker that joins
    later (one that replaces a lost worker): registered once, Dask runs it wherever it is missing."""

    name = "ketamine-cds-prepare-worker"

    def setup(self, worker: Any) -> None:
        prepare_worker()


class DaskCluster:
    """A connection to a scheduler (``--scheduler``), or a ``LocalCluster`` on 127.0.0.1 started for this run."""

    def __init__(self, scheduler: str | None, workers: int, memory_limit: str | None) -> None:
        self._memory_limit = memory_limit
        self._cluster: LocalCluster | None = None
        self._keyed: list[Future[KeyedFile]] = []
        logging.getLogger("distributed").setLevel(logging.ERROR)  # counts only on stderr: the screen prints them
        try:
            if scheduler is None:
                self._cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                                             silence_logs=logging.ERROR, **LOOPBACK)
                self.client = Client(self._cluster)
            else:
                check_scheduler(scheduler)
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            self.close()
            raise ClusterProblem(f"--scheduler {scheduler}: cannot reach the scheduler "
                                 f"({exc.__class__.__name__})") from exc
        try:
            self._check_workers()
        except TimeoutError as exc:
            self.close()
            raise ClusterProblem(f"--scheduler {scheduler}: the scheduler has no worker (waited 30 s)") from exc
        self.client.register_plugin(_PrepareWorker())

    def _check_workers(self) -> None:
        if not self.client.scheduler_info().get("workers"):
            self.client.wait_for_workers(1, timeout=30)
        mine = code_fingerprint()
        theirs = self.client.run(_fingerprint_on_worker)
        different = {addr: sorted(set(mine.items()) ^ set(fp.items())) for addr, fp in theirs.items() if fp != mine}
        if different:
            self.close()
            files = sorted({path for diff in different.values() for path, _ in diff})
            raise ClusterProblem(f"{len(different)} of {len(theirs)} Dask workers run different rule code than this "
                                 f"ketamine-cds ({', '.join(files[:3])}{' …' if len(files) > 3 else ''} differ): "
                                 "install the same version on every worker (pip install "
                                 "'ketamine-cds[dask]==<this version>')")

    def __enter__(self) -> DaskCluster:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def read(self, files: Sequence[BulkFile], horizon: dt.date) -> ReadFiles:
        """Read and key every file on the cluster; the keyed lines stay there, their counts come back."""
        self._keyed = [self.client.submit(_key_task, i, f, horizon, self._memory_limit, pure=False)
                       for i, f in enumerate(files)]
        counts = self.client.gather([self.client.submit(operator.attrgetter("counts"), k) for k in self._keyed])
        seen = self.client.gather([self.client.submit(operator.attrgetter("types_seen"), k) for k in self._keyed])
        patients = self.client.gather([self.client.submit(operator.attrgetter("patient_lines"), k)
                                       for k in self._keyed])
        return ReadFiles({str(f.path): c for f, c in zip(files, counts, strict=True)},
                         tuple(sorted({t for s in seen for t in s})), sum(patients))

    def assess(self, buckets: int, todo: Sequence[int], file_names: list[str], gaps: list[DataGap], policy: Policy,
               as_of: dt.date, key: bytes | None) -> Iterator[tuple[int, bytes]]:
        """Shuffle the keyed lines by patient into ``buckets`` and assess the buckets in ``todo``; yields each
        bucket's result lines as it finishes, in no particular order."""
        import dask.dataframe as dd
        import pandas as pd
        from dask.delayed import delayed

        frames = [self.client.submit(_frame, k) for k in self._keyed]
        medications = self.client.submit(_merge_medications,
                                         *[self.client.submit(operator.attrgetter("medications"), k)
                                           for k in self._keyed])
        lines = dd.from_delayed(frames, meta=_as_pandas(_schema().empty_table()), verify_meta=False)
        shuffled = lines.shuffle(on="pkey", npartitions=buckets, shuffle_method="p2p")
        results = shuffled.map_partitions(_assess_partition, delayed(medications), file_names, gaps, policy,
                                          as_of, key, meta=pd.DataFrame({_RESULT: pd.Series([], dtype=object)}))
        parts = results.to_delayed()
        futures = self.client.compute([parts[i] for i in todo])
        index = {f.key: i for f, i in zip(futures, todo, strict=True)}
        try:
            for future in as_completed(futures):
                frame: pd.DataFrame = future.result()
                yield index[future.key], "".join(r + "\n" for r in frame[_RESULT]).encode("utf-8")
                future.release()
        finally:
            for future in futures:
                future.cancel()


def open_cluster(scheduler: str | None, workers: int, memory_limit: str | None,
                 progress: Callable[..., None]) -> DaskCluster:
    """The cluster, started (or joined) in a thread while this process loads the shuffle's modules: on a LocalCluster
    the workers' start and that loading each take about 2 s, one after the other they were on every run's path."""
    progress("dask: joining the scheduler" if scheduler else f"dask: starting {workers} local workers", force=True)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ketamine-cds-dask-start") as starter:
        starting = starter.submit(DaskCluster, scheduler, workers, memory_limit)
        try:
            _dataframes()
            return starting.result()
        except BaseException:  # Ctrl-C while it starts: close it once started, never leave its workers behind
            starting.add_done_callback(_close_started)
            raise


def _close_started(starting: concurrent.futures.Future[DaskCluster]) -> None:
    if not starting.cancelled() and starting.exception() is None:
        starting.result().close()
