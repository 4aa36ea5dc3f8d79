"""The failback benchmark: ``Failback.run()`` against the documented procedure, on the lab.

Run it with ``nox -s bench`` (or ``python -m benchmarks.bench``); see docs/benchmark.rst.
"""
