"""A deterministic stand-in for the OSRS hiscores, for tests, demos and benchmarks."""
