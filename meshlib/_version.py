"""meshlib's version: one constant, read by the package and by the xDS node it presents."""

__version__ = "0.1.0"
