"""kubeling benchmarks: `python -m benchmarks` (see __main__.py); not part of the test suite."""
