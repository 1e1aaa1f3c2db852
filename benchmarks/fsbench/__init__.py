"""The ``bench_ssim.py`` benchmark, one module per section (run it as
``python benchmarks/bench_ssim.py``; the modules import each other in this order):

``cases``    the input geometries (:class:`Case`), their deterministic inputs, shared constants
``peers``    the rows: :class:`Impl` and ``IMPLEMENTATIONS`` (fastssim's entry points, then the peers)
``harness``  interleaved timing (:func:`time_rows`, :class:`CpuMeter`) and the peak-memory subprocess
``report``   machine description, one Markdown table per case, the issues' targets
``cli``      the command line (:func:`main`)

Nothing here asserts on time (house rule 10).
"""
