"""Mutation score of the clinical core: mutmut mutates ``eligibility/``, the dose parser (``fhir_mapping/dosage.py``,
``fhir_mapping/sig.py``) and the session card rules (``cds_hooks/session_cards.py``) — a threshold moved by one,
``>=`` turned into ``>``, a value, a word or an argument dropped … — and runs their tests against each mutant; a
mutant the tests do not catch is a clinical mistake they would let through. Exits 1 when fewer than 95 % of the
mutants are caught (CI runs it after the tests: ``.ci/run``).

    ./dev run-python bench/mutation.py                                  # every module: run, report, gate
    ./dev run-python bench/mutation.py --only eligibility.sessions      # one module's mutants (while writing tests)
    ./dev run-python bench/mutation.py --only eligibility.course eligibility.assess   # several
    ./dev run-python bench/mutation.py --report                         # report the last run only

mutmut copies the sources into ``mutants/`` and mutates the copy there; the sources themselves are never rewritten.
It copies the tree as it is on disk, so in a working tree others edit at the same time, run it on a private copy
(``git worktree add /tmp/mut HEAD``, then this script inside it).

Each run starts from a clean ``mutants/``: every mutant is tested again, never taken from an earlier run's results
(a changed test can make any mutant survive). mutmut runs, for each mutant, only the tests that executed the
mutated function (it records them in a first pass over the tests), ``--jobs`` mutants at a time. A full run is
~4,300 mutants, ~20 minutes of CPU (about 10 minutes on 2 idle cores). Configuration: ``[tool.mutmut]`` in
pyproject.toml; mutants excluded as equivalent are marked ``# pragma: no mutate`` in the code, with the reason.
"""

from __future__ import annotations

import argparse
import collections
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


def tallies(root: Path, only: list[str]) -> dict[str, Tally]:
    """Caught and missed mutants per module, from mutmut's results (skipped ones count for neither side; one that
    was never checked, as after an interrupted run, is missed)."""
    listing = subprocess.run([MUTMUT, "results", "--all", "true"], cwd=root, check=True, capture_output=True,
                             text=True).stdout
    counts: dict[str, Tally] = collections.defaultdict(Tally)
    for line in listing.splitlines():
        m = _MODULE.match(line)
        if m is None or m["status"] == "skipped" or (only and not any(m["module"].startswith(o) for o in only)):
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


def run_mutmut(root: Path, only: list[str], jobs: int) -> None:
    shutil.rmtree(root / "mutants", ignore_errors=True)
    args = [MUTMUT, "run", "--max-children", str(jobs), *(f"{o}.*" for o in only)]
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
    parser.add_argument("--only", nargs="+", default=[], metavar="MODULE",
                        help="mutate these modules only (e.g. eligibility.sessions)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutants tested at once")
    args = parser.parse_args()

    started = time.monotonic()
    if not args.report:
        run_mutmut(ROOT, args.only, args.jobs)
    text, passed = report(tallies(ROOT, args.only))
    print(text)
    if not args.report:
        print(f"mutation run: {(time.monotonic() - started) / 60:.1f} min with {args.jobs} workers")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
