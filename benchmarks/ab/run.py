"""A/B of two fastssim checkouts on this machine, alternating subprocesses.

    python benchmarks/ab/run.py OLD_ROOT NEW_ROOT ROUNDS [CASES_SCRIPT]

Each round runs the cases script (default: cases.py beside this file, which
prints the median seconds per case as JSON) once with PYTHONPATH=OLD_ROOT and
once with NEW_ROOT (each root a checkout with its extension built in place);
the table gives the median over rounds of each checkout's medians and their
ratio.  Alternating rounds see the same machine load, so the ratio is
meaningful on a shared machine where the absolute times drift.  No asserts.
"""
import json
import os
import subprocess
import sys

import numpy as np


def main():
    old, new, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    script = sys.argv[4] if len(sys.argv) > 4 else os.path.join(os.path.dirname(__file__),
                                                                "cases.py")
    roots = {"old": old, "new": new}
    res = {k: [] for k in roots}
    for _ in range(rounds):
        for name, root in roots.items():
            env = dict(os.environ, PYTHONPATH=root)
            o = subprocess.run([sys.executable, os.path.abspath(script)], env=env,
                               capture_output=True, text=True, cwd="/", check=True)
            res[name].append(json.loads(o.stdout))
    print(f"{'case':12s} {'old ms':>8s} {'new ms':>8s} {'new/old':>8s}")
    for k in res["old"][0]:
        a = np.median([d[k] for d in res["old"]]) * 1e3
        b = np.median([d[k] for d in res["new"]]) * 1e3
        print(f"{k:12s} {a:8.3f} {b:8.3f} {b / a:8.3f}")


if __name__ == "__main__":
    main()
