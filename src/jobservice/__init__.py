"""jobservice: run commands on a host for authenticated users and follow their output."""

__version__ = "0.1.0"
