"""Import rules that keep the layers apart (read from the source, not from imports
at run time, so a function-level import counts too).

- meshlib's subpackages (and top-level modules) import each other without cycles,
  except the ones listed in ALLOWED_CYCLES with the reason they still exist;
- ``meshlib.matching`` is a leaf: routing and resilience both use it;
- the control plane's config layer does not import translate;
- only ``meshlib/observability/_otel_internals.py`` reads OpenTelemetry internals;
- a private module (``_name.py``) is imported only from inside its own package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Subpackage cycles that still exist, each with why (remove an entry once it is gone).
ALLOWED_CYCLES: dict[frozenset[str], str] = {}

#: Private modules other packages may import, each with why.
SHARED_PRIVATE: dict[str, str] = {
    "meshlib._protos": "the generated registration protocol, spoken by both sides",
}

#: What the leaf package may import from meshlib.
MATCHING_MAY_IMPORT = {"meshlib.xds_client.resources", "meshlib.errors", "meshlib.matching"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    """Every absolute module name ``path`` imports (``from a import b`` yields ``a`` and
    ``a.b``: b may be a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _unit(module: str) -> str:
    """The subpackage (or top-level module) a meshlib module belongs to."""
    return ".".join(module.split(".")[:2])


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's components of more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _known_modules(package: str) -> set[str]:
    return {_module_name(path) for path in _sources(package)}


def test_meshlib_subpackages_have_no_undocumented_cycles() -> None:
    known = _known_modules("meshlib")
    graph: dict[str, set[str]] = {}
    for path in _sources("meshlib"):
        source = _unit(_module_name(path))
        if source == "meshlib":
            continue  # the package's curated re-exports
        for target in _imports(path):
            if target in known and _unit(target) not in (source, "meshlib"):
                graph.setdefault(source, set()).add(_unit(target))
    cycles = [frozenset(c) for c in _strongly_connected(graph)]
    undocumented = [sorted(c) for c in cycles if c not in ALLOWED_CYCLES]
    assert not undocumented, f"import cycles between meshlib subpackages: {undocumented}"


def test_matching_is_a_leaf() -> None:
    known = _known_modules("meshlib")
    for path in _sources("meshlib/matching"):
        for target in _imports(path):
            if target in known and not any(
                target == allowed or target.startswith(f"{allowed}.")
                for allowed in MATCHING_MAY_IMPORT
            ):
                raise AssertionError(f"{path.relative_to(ROOT)} imports {target}")


def test_the_config_layer_does_not_import_translate() -> None:
    for path in _sources("controlplane/config"):
        for target in _imports(path):
            assert not target.startswith("controlplane.translate"), (
                f"{path.relative_to(ROOT)} imports {target}"
            )


def test_only_one_module_reads_opentelemetry_internals() -> None:
    allowed = ROOT / "meshlib/observability/_otel_internals.py"
    for package in ("meshlib", "controlplane"):
        for path in _sources(package):
            private = [
                t
                for t in _imports(path)
                if t.startswith("opentelemetry")
                and any(part.startswith("_") for part in t.split("."))
            ]
            if path != allowed:
                assert not private, f"{path.relative_to(ROOT)} reads {private}"
    assert "._METER_PROVIDER" in allowed.read_text()


def test_private_modules_are_imported_only_inside_their_package() -> None:
    known = _known_modules("meshlib") | _known_modules("controlplane")
    for package in ("meshlib", "controlplane"):
        for path in _sources(package):
            importer = _module_name(path)
            for target in _imports(path):
                if target not in known:
                    continue
                parts = target.split(".")
                private_at = next((i for i, part in enumerate(parts) if part.startswith("_")), None)
                if private_at is None:
                    continue
                owner = ".".join(parts[:private_at])
                if ".".join(parts[: private_at + 1]) in SHARED_PRIVATE:
                    continue
                assert importer == owner or importer.startswith(f"{owner}."), (
                    f"{importer} imports {target}, private to {owner}"
                )
