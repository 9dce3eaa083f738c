"""Mutation score of the clinical core: mutmut mutates ``eligibility/``, ``fhir_mapping/dosage.py`` and
``fhir_mapping/sig.py`` (a threshold moved by one, ``>=`` turned into ``>``, a value or an argument dropped …) and
runs their tests against each mutant; a mutant the tests do not catch is a clinical mistake they would let through.
Exits 1 when fewer than 95 % of the mutants are caught (CI runs it: ``.ci/run``).

    ./dev run-python bench/mutation.py                          # run mutmut on every module, report, gate
    ./dev run-python bench/mutation.py --only eligibility.sessions   # one module's mutants (while writing tests)
    ./dev run-python bench/mutation.py --report                 # report the last run only
    ./dev run-python bench/mutation.py --cache DIR              # skip the run when its inputs passed before

mutmut copies the sources into ``mutants/`` and mutates the copy there; the sources themselves are never rewritten.
It copies the tree as it is on disk, so in a working tree others edit at the same time, run it on a private copy
(``git worktree add /tmp/mut HEAD``, then this script inside it).

A full run is ~3,700 mutants, about 10 minutes on 2 cores. With ``--cache DIR`` (CI passes one) a run whose inputs —
the mutated packages, the tests mutmut runs, the fixtures they read, the lock file and the configuration — are
byte for byte those of a passing run is not repeated: its report is printed again. Any change to one of them runs
everything again, since a changed test can make any mutant survive; mutmut's own per-mutant cache is not used for
that reason. Configuration: ``[tool.mutmut]`` in pyproject.toml.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = str(Path(sys.executable).with_name("mutmut"))
GOAL = 95.0

#: What a run's outcome depends on (the cache key): the code mutated and what it imports, the tests mutmut selects
#: and the helpers and data they read, the dependencies and this script with its configuration.
INPUTS = ("eligibility", "fhir_mapping", "fixtures", "tests/eligibility", "tests/fhir_mapping", "tests/__init__.py",
          "tests/conftest.py", "pyproject.toml", "uv.lock", "bench/mutation.py")

#: mutmut's verdicts that count as caught: a test failed, the mutant hung, or it did not even type-check.
CAUGHT = frozenset({"killed", "timeout", "caught by type check"})
_MODULE = re.compile(r"^\s*(?P<module>[\w.]+?)\.x[_ǁ].*__mutmut_\d+: (?P<status>.+)$")


@dataclass(frozen=True, slots=True)
class Tally:
    caught: int = 0
    missed: int = 0

    @property
    def score(self) -> float:
        total = self.caught + self.missed
        return 100 * self.caught / total if total else 100.0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.caught + other.caught, self.missed + other.missed)


def tallies(root: Path, only: str | None) -> dict[str, Tally]:
    """Caught and missed mutants per module, from mutmut's results (skipped ones count for neither side; one that
    was never checked, as after an interrupted run, is missed)."""
    listing = subprocess.run([MUTMUT, "results", "--all", "true"], cwd=root, check=True, capture_output=True,
                             text=True).stdout
    counts: dict[str, Tally] = collections.defaultdict(Tally)
    for line in listing.splitlines():
        m = _MODULE.match(line)
        if m is None or m["status"] == "skipped" or (only and not m["module"].startswith(only)):
            continue
        counts[m["module"]] += Tally(1, 0) if m["status"] in CAUGHT else Tally(0, 1)
    return dict(counts)


def report(counts: dict[str, Tally]) -> tuple[str, bool]:
    overall = sum(counts.values(), Tally())
    lines = [f"{'module':<26} {'mutants':>7} {'caught':>7} {'missed':>7} {'score':>8}"]
    for module, t in sorted(counts.items(), key=lambda kv: (kv[1].score, kv[0])):
        lines.append(f"{module:<26} {t.caught + t.missed:>7} {t.caught:>7} {t.missed:>7} {t.score:>7.1f} %")
    passed = bool(counts) and overall.score >= GOAL
    lines.append(f"{'overall':<26} {overall.caught + overall.missed:>7} {overall.caught:>7} {overall.missed:>7} "
                 f"{overall.score:>7.1f} %  (goal >= {GOAL:.0f} %: {'met' if passed else 'NOT MET'})")
    return "\n".join(lines), passed


def fingerprint(root: Path) -> str:
    """SHA-256 over the path and bytes of every input file (git's list when there is a repository: no caches)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "--", *INPUTS], cwd=root,
                            capture_output=True, text=True)
    if listed.returncode == 0:
        files = sorted(p for p in listed.stdout.splitlines() if (root / p).is_file())
    else:
        files = sorted(str(p.relative_to(root)) for name in INPUTS for p in [root / name, *(root / name).rglob("*")]
                       if p.is_file() and "__pycache__" not in p.parts)
    digest = hashlib.sha256(f"{sys.version_info[:2]}".encode())
    for name in files:
        digest.update(name.encode() + b"\0" + hashlib.sha256((root / name).read_bytes()).digest())
    return digest.hexdigest()


def run_mutmut(root: Path, only: str | None, jobs: int) -> None:
    shutil.rmtree(root / "mutants", ignore_errors=True)
    args = [MUTMUT, "run", "--max-children", str(jobs), *([f"{only}.*"] if only else [])]
    with tempfile.TemporaryFile("w+") as log:
        done = subprocess.run(args, cwd=root, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            log.seek(0)
            # The log is a spinner redrawn with carriage returns: keep the lines it ends with.
            tail = [line.rsplit("\r", 1)[-1] for line in log.read().splitlines()][-30:]
            sys.exit("mutmut failed:\n" + "\n".join(tail))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="report the last run without running mutmut again")
    parser.add_argument("--only", metavar="MODULE", help="mutate one module only (e.g. eligibility.sessions)")
    parser.add_argument("--cache", type=Path, metavar="DIR", help="keep passing reports here, keyed by the inputs")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutants tested at once")
    args = parser.parse_args()

    cached = None
    if args.cache and not args.only and not args.report:
        cached = args.cache / f"{fingerprint(ROOT)}.txt"
        if cached.is_file():
            print(f"mutation: inputs unchanged since a passing run ({cached.name[:12]}); its report:")
            print(cached.read_text(), end="")
            return 0
    started = time.monotonic()
    if not args.report:
        run_mutmut(ROOT, args.only, args.jobs)
    text, passed = report(tallies(ROOT, args.only))
    print(text)
    if not args.report:
        print(f"mutation run: {(time.monotonic() - started) / 60:.1f} min with {args.jobs} workers")
    if cached is not None and passed:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(text + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
