"""Benchmarks of the running system, each next to an anchor measured in the same run (see bench/README.md)."""
