#!/usr/bin/env python
"""fastssim against its peers on the CPU, side by side, in one process.

    python benchmarks/bench_ssim.py                 # full run (ten minutes or more)
    python benchmarks/bench_ssim.py --quick         # under two minutes
    python benchmarks/bench_ssim.py --sizes 1024 --dtypes float32 --out results.md

For every case (image size, layout, dtype) each implementation is called once
to warm up, then timed in interleaved rounds; the table reports the median wall time,
megapixels per second, the ratio of its time to the fastssim row it is
compared with, and the peak extra resident memory of one call, measured in a
fresh subprocess.  The value each row computed (SSIM, MS-SSIM or a loss) is
shown too, so rows that claim to compute the same thing can be seen to agree.  Nothing here asserts
on timing (house rule 10): the issue's speed targets are reported, not enforced.

Adding rows: append an :class:`Impl` to ``fsbench.peers.IMPLEMENTATIONS`` (and, if wanted,
a :class:`Target`).  ``make(inp)`` receives the case's :class:`Inputs` and
returns a zero-argument callable that does the work and returns the mean
value (a float), or raises :class:`Skip` with a reason.  Import optional peers
inside ``make`` so that a missing package only skips its own rows; ``when``
restricts a row to some cases and ``slow`` marks a peer timed in one call.
The code lives in the ``fsbench`` package next to this script, one module per
section: ``cases`` (geometry and inputs), ``peers`` (the rows), ``harness``
(timing and the memory subprocess), ``report`` (machine description, tables,
targets) and ``cli`` (this command line).  See benchmarks/README.md.
"""


import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fsbench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
