"""Observability: metrics through the OpenTelemetry API, logs through stdlib logging.

Internal to meshlib (the names recorded are the contract: docs/api.md, Metrics).

- :mod:`.metrics`: client instruments and resilience counters
- :mod:`.logging`: structlog events handed to the stdlib logger of each module
- ``_otel_internals`` (private): the one place OpenTelemetry internals are read
"""
