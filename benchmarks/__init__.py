"""Benchmarks of gradwatch (run as scripts; see each module)."""
