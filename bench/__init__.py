"""sluice's benchmark suite: `make bench` (or `python -m bench.run`); see docs/benchmarks.md."""
