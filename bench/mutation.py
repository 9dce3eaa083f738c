"""Mutation score of the clinical core: mutmut mutates ``eligibility/``, ``fhir_mapping/dosage.py`` and
``fhir_mapping/sig.py`` (a threshold moved by one, ``>=`` turned into ``>``, a value or an argument dropped …) and
runs their tests against each mutant; a mutant the tests do not catch is a clinical mistake they would let through.

    ./dev run-python bench/mutation.py            # run mutmut (a few minutes on 2 cores), then report
    ./dev run-python bench/mutation.py --report   # report the last run only

Configuration: ``[tool.mutmut]`` in pyproject.toml. Goal: >= 95 % of mutants caught.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = str(Path(sys.executable).with_name("mutmut"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="report the last run without running mutmut again")
    args = parser.parse_args()
    if not args.report:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        subprocess.run([MUTMUT, "run", "--max-children", "2"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([MUTMUT, "export-cicd-stats"], cwd=ROOT, check=True, capture_output=True)
    stats = json.loads((ROOT / "mutants" / "mutmut-cicd-stats.json").read_text())
    results = subprocess.run([MUTMUT, "results"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    missed = collections.Counter()
    for line in results.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if status in ("survived", "no tests"):
            module = name.split(".x")[0] if ".x" in name else name
            missed[module] += 1
    caught = stats["killed"] + stats.get("timeout", 0)
    total = stats["total"] - stats.get("skipped", 0)
    print(f"mutants: {stats['total']}; caught {caught}; survived {stats['survived']}; "
          f"no test reaches {stats['no_tests']}")
    print(f"mutation score: {100 * caught / total:.1f} % (goal >= 95 %)")
    for module, count in missed.most_common():
        print(f"  {module:<32} {count:>4} not caught")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
