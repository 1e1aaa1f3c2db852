"""Build of fastssim's Cython/C extension.

* Optimised (-O3) and, where the compiler supports it, OpenMP.  The OpenMP
  flag is probed by compiling and linking a small test program; if that
  fails the extension is built serially and a loud warning is printed.
  FASTSSIM_NO_OPENMP=1 forces the serial build (CI tests both).
* Portable by default: no -march=native.  The kernels carry AVX-512 and
  AVX2 clones chosen at load time (see fastssim/_src/engine.c).
  FASTSSIM_NATIVE=1 opts in to -march=native for a machine-specific build.
"""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

OMP_TEST = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d", n > 0);
        return omp_get_max_threads() > 0 ? 0 : 1;
    }
    """
)


def _compiler():
    return os.environ.get("CC") or sysconfig.get_config_var("CC").split()[0] or "cc"


def probe_openmp():
    """Return (compile_flags, link_flags) for OpenMP, or None if unavailable."""
    if os.environ.get("FASTSSIM_NO_OPENMP", "") not in ("", "0"):
        return None
    if sys.platform == "win32":
        return (["/openmp"], [])
    cc = _compiler()
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        candidates.append((["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "omp_test.c")
        with open(src, "w") as f:
            f.write(OMP_TEST)
        for cflags, lflags in candidates:
            exe = os.path.join(tmp, "omp_test")
            cmd = [cc, *cflags, src, "-o", exe, *lflags]
            try:
                ok = subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0
                ok = ok and subprocess.run([exe], capture_output=True, timeout=60).returncode == 0
            except (OSError, subprocess.SubprocessError):
                ok = False
            if ok:
                return cflags, lflags
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return None


omp = probe_openmp()
if omp is None:
    msg = (
        "\n" + "*" * 72 + "\n"
        "fastssim: OpenMP is NOT available (or FASTSSIM_NO_OPENMP is set).\n"
        "Building a SERIAL extension: results are identical, but only one\n"
        "core is used.  Install a compiler with OpenMP support (gcc, or\n"
        "clang with libomp) and rebuild for multi-threaded speed.\n" + "*" * 72
    )
    warnings.warn(msg)
    print(msg, file=sys.stderr)
    omp_c, omp_l = [], []
else:
    omp_c, omp_l = omp

if sys.platform == "win32":
    opt = ["/O2"]
else:
    # -fno-trapping-math: the formulas select between computed values (clamps,
    # the near-1 / near-0 forms of l and cs); without it GCC will not
    # speculate those operations and leaves the loops scalar on AVX2 and SSE2.
    opt = ["-O3", "-std=c11", "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math",
           "-Wno-unused-function"]
    if os.environ.get("FASTSSIM_NATIVE", "") not in ("", "0"):
        opt.append("-march=native")

ext = Extension(
    "fastssim._engine",
    sources=["fastssim/_engine.pyx", "fastssim/_src/engine.c"],
    include_dirs=[np.get_include(), "fastssim/_src"],
    # every C header under fastssim/_src (engine.h, engine_isa.h, engine_impl.h
    # and the engine_<concept>.h parts it includes)
    depends=sorted(glob.glob("fastssim/_src/*.h")),
    extra_compile_args=opt + omp_c,
    extra_link_args=omp_l,
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
)

setup(
    ext_modules=cythonize(
        [ext],
        compiler_directives={"language_level": 3},
        compile_time_env={},
    ),
)
