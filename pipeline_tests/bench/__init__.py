"""Benchmarks run by hand or by `make bench`; each module exposes `main(quick: bool = False)`."""
