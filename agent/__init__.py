"""Lineside agent: the application that turns scans and PLC signals into traceable events."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lineside")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
