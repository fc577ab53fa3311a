"""Benchmark transformer text classifiers across compressed variants, runtimes and hardware."""

__version__ = "0.1.0"
