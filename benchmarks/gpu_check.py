"""One-shot GPU validation and benchmark of the CuPy backend (issue 12).

Run on a machine with a CUDA GPU, CuPy and a C compiler (the device image has
them), from the repository root, in well under 8 minutes:

    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out "$OUT"

It writes ``gpu_report.md`` (the report), ``gpu_report.json`` (every number),
``gpu_pytest.log`` and ``gpu_pytest.xml`` into ``--out`` and prints the report.
Steps, each bounded and each reported even when an earlier one fails:

1. the CPU extension: imported, or built in place (``setup.py build_ext``);
2. correctness: ``pytest tests/test_cupy_device.py``
   (the GPU against the CPU backend: float64 to 1e-12, float32 within the stated
   tolerance, gradients against central finite differences, bitwise run-to-run
   identity; see that file), with a time limit;
3. headline numbers at 4K RGB (1 x 3 x 2160 x 3840): float32 and float64
   errors against the CPU backend, bitwise determinism of three runs;
4. speed (medians of CUDA-event timings after warm-up, no asserts): fastssim
   value and value + gradient against pytorch_msssim and torchmetrics
   (forward + backward through autograd), the CuPy recipe (five
   ``cupyx.scipy.ndimage.gaussian_filter`` calls and the formula), the CPU
   backend; a 16 x 3 x 256 x 256 batch; and the GPU memory a call takes
   beyond its inputs (CuPy's pool).

pytorch_msssim is a pure-Python wheel that the device image lacks: carry it
(``pip download --no-deps pytorch-msssim -d .whl`` here, ``carry: [".whl"]``);
this script installs any ``.whl/*.whl`` into a private folder itself.
Never asserts; a missing peer is reported as such.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = []
DATA = {}


def say(line=""):
    print(line, flush=True)
    REPORT.append(line)


def section(title):
    say("")
    say(f"## {title}")
    say("")


def _carried_wheels():
    wheels = glob.glob(os.path.join(ROOT, ".whl", "*.whl"))
    if not wheels:
        return
    site = "/tmp/fastssim_site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    "--no-compile", "--target", site, *wheels], check=False)
    sys.path.insert(0, site)
    os.environ["PYTHONPATH"] = site + os.pathsep + os.environ.get("PYTHONPATH", "")


def step_build():
    section("1. CPU extension")
    sys.path.insert(0, ROOT)
    os.environ["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
    probe = subprocess.run([sys.executable, "-c", "import fastssim"], cwd=ROOT,
                           capture_output=True, text=True)
    if probe.returncode == 0:
        say("fastssim imports (extension prebuilt for this Python)")
        return True
    say(f"fastssim does not import ({probe.stderr.strip().splitlines()[-1:]}); building in place")
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    say(f"build_ext: rc {res.returncode} in {time.perf_counter() - t:.0f} s")
    if res.returncode != 0:
        say("```\n" + res.stderr[-3000:] + "\n```")
        return False
    return True


def step_pytest(out, limit):
    section("2. Correctness tests (GPU against the CPU backend)")
    log = os.path.join(out, "gpu_pytest.log")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
           f"--junitxml={os.path.join(out, 'gpu_pytest.xml')}",
           "test_cupy_device.py"]
    t = time.perf_counter()
    try:
        res = subprocess.run(cmd, cwd=os.path.join(ROOT, "tests"), capture_output=True, text=True,
                             timeout=limit)
        text, rc = res.stdout + res.stderr, res.returncode
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) \
            else (exc.stdout or "")
        text += f"\nTIMEOUT after {limit} s"
        rc = "timeout"
    with open(log, "w") as f:
        f.write(text)
    tail = [ln for ln in text.splitlines() if ln.strip()][-25:]
    say(f"`pytest tests/test_cupy_device.py`: rc {rc}, "
        f"{time.perf_counter() - t:.0f} s")
    say("```")
    for ln in tail:
        say(ln)
    say("```")
    DATA["pytest_rc"] = rc


def _timeit(fn, cp, reps=20, warm=3):
    """Median milliseconds of fn() between CUDA events on the current stream."""
    for _ in range(warm):
        fn()
    cp.cuda.Stream.null.synchronize()
    times = []
    for _ in range(reps):
        a, b = cp.cuda.Event(), cp.cuda.Event()
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(cp.cuda.get_elapsed_time(a, b))
    times.sort()
    return times[len(times) // 2]


def _torch_timeit(fn, torch, reps=20, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def step_numbers():
    import numpy as np
    import cupy as cp

    import fastssim

    section("3. Headline accuracy at 4K RGB (1 x 3 x 2160 x 3840, channel_axis=1)")
    rng = np.random.default_rng(0)
    shape = (1, 3, 2160, 3840)
    x64 = rng.random(shape)
    y64 = np.clip(x64 + 0.1 * rng.standard_normal(shape), 0, 1)
    kw = dict(data_range=1.0, channel_axis=1)
    t = time.perf_counter()
    cpu64 = fastssim.ssim(x64, y64, full=True, gradient="x", **kw)
    t_cpu64 = time.perf_counter() - t
    gx, gy = cp.asarray(x64), cp.asarray(y64)
    gpu64 = fastssim.ssim(gx, gy, full=True, gradient="x", **kw)

    def rel(a, b, scale=None):
        a, b = cp.asnumpy(a).astype(np.float64), np.asarray(b, dtype=np.float64)
        s = scale if scale is not None else max(float(np.max(np.abs(b))), 1e-300)
        return float(np.max(np.abs(a - b))) / s

    e = {"f64_value": rel(gpu64.value, cpu64.value, 1.0), "f64_map": rel(gpu64.map, cpu64.map, 1.0),
         "f64_grad": rel(gpu64.grad_x, cpu64.grad_x)}
    x32, y32 = x64.astype(np.float32), y64.astype(np.float32)
    cpu32 = fastssim.ssim(x32, y32, full=True, gradient="x", **kw)
    g32 = fastssim.ssim(cp.asarray(x32), cp.asarray(y32), full=True, gradient="x", **kw)
    e.update({"f32_value_vs_cpu64": rel(g32.value, cpu64.value, 1.0),
              "f32_value_vs_cpu32": rel(g32.value, cpu32.value, 1.0),
              "f32_map_vs_cpu64": rel(g32.map, cpu64.map, 1.0),
              "f32_grad_vs_cpu64": rel(g32.grad_x, cpu64.grad_x)})
    for name, fn in (("ms_ssim", fastssim.ms_ssim), ("pixelwise_ms_ssim", fastssim.pixelwise_ms_ssim)):
        try:
            c = fn(x64, y64, gradient="x", **kw)
            gres = fn(gx, gy, gradient="x", **kw)
            e[f"f64_{name}_value"] = rel(gres.value, c.value, 1.0)
            e[f"f64_{name}_grad"] = rel(gres.grad_x, c.grad_x)
        except Exception as exc:  # noqa: BLE001
            say(f"{name} accuracy: failed ({type(exc).__name__}: {exc})")
    DATA["accuracy"] = e
    say("| quantity | max error (values, maps: absolute; gradients: / max abs gradient) |")
    say("| --- | --- |")
    for k, v in e.items():
        say(f"| {k} | {v:.3g} |")
    runs = [fastssim.ssim(cp.asarray(x32), cp.asarray(y32), full=True, gradient="both", **kw)
            for _ in range(3)]
    same = all(bool(cp.array_equal(getattr(r, f), getattr(runs[0], f)))
               for r in runs[1:] for f in ("value", "map", "grad_x", "grad_y"))
    DATA["bitwise_deterministic"] = same
    say(f"\nthree float32 runs (value, map, both gradients) bitwise identical: **{same}**")
    say(f"CPU float64 value + map + gradient at 4K RGB: {t_cpu64 * 1e3:.0f} ms "
        f"({os.cpu_count()} CPUs; one run)")

    section("4. Speed (median ms of 20 CUDA-event timings after 3 warm-ups)")
    rows = []
    X, Y = cp.asarray(x32), cp.asarray(y32)
    pool = cp.get_default_memory_pool()

    def mem_of(fn):
        cp.cuda.Stream.null.synchronize()
        pool.free_all_blocks()
        before = pool.total_bytes()
        r = fn()
        cp.cuda.Stream.null.synchronize()
        peak = pool.total_bytes() - before
        del r
        return peak / X.nbytes

    def add(name, ms, mem=None):
        rows.append((name, ms, mem))

    add("fastssim GPU ssim value (4K RGB f32)",
        _timeit(lambda: fastssim.ssim(X, Y, **kw), cp),
        mem_of(lambda: fastssim.ssim(X, Y, **kw)))
    add("fastssim GPU ssim value + grad x",
        _timeit(lambda: fastssim.ssim(X, Y, gradient="x", **kw), cp),
        mem_of(lambda: fastssim.ssim(X, Y, gradient="x", **kw)))
    for name, fn in (("ms_ssim", fastssim.ms_ssim), ("pixelwise_ms_ssim", fastssim.pixelwise_ms_ssim)):
        try:
            add(f"fastssim GPU {name} value + grad x",
                _timeit(lambda: fn(X, Y, gradient="x", **kw), cp, reps=10),
                mem_of(lambda: fn(X, Y, gradient="x", **kw)))
        except Exception as exc:  # noqa: BLE001
            say(f"{name} timing: failed ({type(exc).__name__}: {exc})")
    try:
        import cupyx.scipy.ndimage as ndi

        def recipe():
            s = 1.5
            f = lambda a: ndi.gaussian_filter(a, sigma=(0, 0, s, s), truncate=3.5,  # noqa: E731
                                              mode="reflect")
            mx, my = f(X), f(Y)
            sxx, syy, sxy = f(X * X) - mx * mx, f(Y * Y) - my * my, f(X * Y) - mx * my
            C1, C2 = 0.01 ** 2, 0.03 ** 2
            m = ((2 * mx * my + C1) * (2 * sxy + C2)) / ((mx * mx + my * my + C1) * (sxx + syy + C2))
            return m[..., 5:-5, 5:-5].mean()
        add("CuPy recipe (5 gaussian_filter + formula), value", _timeit(recipe, cp), mem_of(recipe))
    except Exception as exc:  # noqa: BLE001
        say(f"CuPy recipe: failed ({type(exc).__name__}: {exc})")
    try:
        import torch

        tx = torch.as_tensor(x32, device="cuda")
        ty = torch.as_tensor(y32, device="cuda")
        try:
            import pytorch_msssim as pm

            def pm_fb():
                a = tx.clone().requires_grad_(True)
                pm.ssim(a, ty, data_range=1.0, size_average=True).backward()
                return a.grad
            add("pytorch_msssim ssim forward + backward", _torch_timeit(pm_fb, torch))
            def pm_ms():
                a = tx.clone().requires_grad_(True)
                pm.ms_ssim(a, ty, data_range=1.0, size_average=True).backward()
                return a.grad
            add("pytorch_msssim ms_ssim forward + backward", _torch_timeit(pm_ms, torch, reps=10))
            add("pytorch_msssim ssim forward", _torch_timeit(
                lambda: pm.ssim(tx, ty, data_range=1.0, size_average=True), torch))
        except ImportError:
            say("pytorch_msssim: not installed (carry its wheel in .whl/, see the docstring)")
        try:
            from torchmetrics.functional.image import structural_similarity_index_measure as tm

            def tm_fb():
                a = tx.clone().requires_grad_(True)
                tm(a, ty, data_range=1.0).backward()
                return a.grad
            add("torchmetrics SSIM forward + backward", _torch_timeit(tm_fb, torch))
        except Exception as exc:  # noqa: BLE001
            say(f"torchmetrics: failed ({type(exc).__name__}: {exc})")
    except Exception as exc:  # noqa: BLE001
        say(f"torch peers: failed ({type(exc).__name__}: {exc})")
    t = time.perf_counter()
    fastssim.ssim(x32, y32, gradient="x", **kw)
    add(f"fastssim CPU value + grad x ({os.cpu_count()} CPUs, one run)",
        (time.perf_counter() - t) * 1e3)

    # a batch of 16 x 3 x 256 x 256
    xb = rng.random((16, 3, 256, 256)).astype(np.float32)
    yb = np.clip(xb + 0.1 * rng.standard_normal(xb.shape).astype(np.float32), 0, 1)
    XB, YB = cp.asarray(xb), cp.asarray(yb)
    add("fastssim GPU 16x3x256^2 value + grad x",
        _timeit(lambda: fastssim.ssim(XB, YB, gradient="x", **kw), cp))
    try:
        import torch
        import pytorch_msssim as pm

        txb = torch.as_tensor(xb, device="cuda")
        tyb = torch.as_tensor(yb, device="cuda")

        def pmb():
            a = txb.clone().requires_grad_(True)
            pm.ssim(a, tyb, data_range=1.0, size_average=True).backward()
            return a.grad
        add("pytorch_msssim 16x3x256^2 forward + backward", _torch_timeit(pmb, torch))
    except ImportError:
        pass

    say("| row | ms | GPU memory beyond the inputs (x one input) |")
    say("| --- | --- | --- |")
    for name, ms, mem in rows:
        say(f"| {name} | {ms:.3f} | {'' if mem is None else f'{mem:.2f}'} |")
    DATA["speed_ms"] = {name: ms for name, ms, _ in rows}
    DATA["memory_inputs"] = {name: mem for name, _, mem in rows if mem is not None}
    t = dict((n, ms) for n, ms, _ in rows)
    pmfb = t.get("pytorch_msssim ssim forward + backward")
    ours = t.get("fastssim GPU ssim value + grad x")
    if pmfb and ours:
        say(f"\nvalue + gradient, pytorch_msssim / fastssim: **{pmfb / ours:.1f}x** "
            "(target >= 20x; targets: value <= 0.25 ms, value + gradient <= 0.5 ms)")
    for name, target in (("ms_ssim", "1.0"), ("pixelwise_ms_ssim", "5")):
        v = t.get(f"fastssim GPU {name} value + grad x")
        if v:
            say(f"{name} value + gradient: {v:.3f} ms (target <= {target} ms)")
    pmb_ms = t.get("pytorch_msssim 16x3x256^2 forward + backward")
    if pmb_ms:
        say(f"batch 16x3x256^2, pytorch_msssim / fastssim: "
            f"**{pmb_ms / t['fastssim GPU 16x3x256^2 value + grad x']:.1f}x** (target >= 10x)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for the report")
    ap.add_argument("--pytest-limit", type=int, default=240, help="seconds for the test step")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    say("# fastssim GPU check (issue 12)")
    say("")
    say(f"python {platform.python_version()} on {platform.node()}, {os.cpu_count()} CPUs")
    _carried_wheels()
    try:
        import cupy as cp

        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        say(f"CuPy {cp.__version__}, CUDA runtime {cp.cuda.runtime.runtimeGetVersion()}, "
            f"device: {name}")
        DATA["device"] = name
    except Exception as exc:  # noqa: BLE001
        say(f"CuPy / GPU unavailable: {type(exc).__name__}: {exc}")
    ok = step_build()
    if ok:
        step_pytest(args.out, args.pytest_limit)
        try:
            step_numbers()
        except Exception:  # noqa: BLE001
            say("```\n" + traceback.format_exc()[-4000:] + "\n```")
    say(f"\ntotal {time.perf_counter() - t0:.0f} s")
    with open(os.path.join(args.out, "gpu_report.md"), "w") as f:
        f.write("\n".join(REPORT) + "\n")
    with open(os.path.join(args.out, "gpu_report.json"), "w") as f:
        json.dump(DATA, f, indent=1, default=str)


if __name__ == "__main__":
    main()
