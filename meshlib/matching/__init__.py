"""Request matching: xDS route match conditions and RE2 regexes, compiled once.

A leaf package: it imports only ``meshlib.xds_client.resources`` (the models it
compiles), so routing (route tables) and resilience (retry and fault header
conditions) both use it without importing each other.

- :mod:`.matchers`: path, header, query and runtime-fraction matchers (Envoy semantics)
- :mod:`.regex`: RE2 for ``safe_regex`` and regex substitutions
"""
