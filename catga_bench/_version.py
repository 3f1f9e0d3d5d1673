"""The distribution's version (one place; ``catga_bench.__version__`` shows it)."""

__version__ = "0.1.0"
