"""Benchmarks on real public data; each takes its data folder as an argument and writes JSON."""
