"""Timing one case honestly: ``timing`` (measure, paired overhead, peak memory) and ``bench`` (the benchmark
bodies: step, bare reference loop, loader, epoch). Imports torch."""
