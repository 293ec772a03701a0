"""The tool's version: one home, low enough for every layer (reports and journals record it)."""

__version__ = "0.1.0"
