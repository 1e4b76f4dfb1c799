"""docs/architecture.md names real things: every file, folder and code name it puts in
backticks exists in meshlib as written (the map stays true as the code moves)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MESHLIB = ROOT / "meshlib"
DOC = ROOT / "docs" / "architecture.md"

#: Names the map uses that are not meshlib's (another project's, or a header).
NOT_MESHLIB = {"BaseRetrying.iter", "grpc-previous-rpc-attempts"}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _module_files() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in MESHLIB.rglob("*.py"):
        found.setdefault(path.stem, []).append(path)
    return found


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _resolves(dotted: str, files: dict[str, list[Path]], source: str) -> bool:
    """``module.Name[.attr]`` (module by file name, or ``pkg/module``) or
    ``Class.attr`` (a class defined somewhere in meshlib)."""
    head, *rest = dotted.split(".")
    if "/" in head:
        candidates = [MESHLIB / f"{head}.py"]
    elif head in files:
        candidates = files[head]
    elif head.islower():
        return True  # an instance's member in prose (``observer.start``)
    else:
        defined = re.search(rf"^class {re.escape(head)}\b", source, re.M)
        if defined is None:
            return False
        candidates = [p for ps in files.values() for p in ps if f"class {head}" in p.read_text()]
        rest = [head, *rest]
    for path in candidates:
        value: object = importlib.import_module(_module_of(path))
        try:
            for name in rest:
                value = getattr(value, name)
        except AttributeError:
            continue
        return True
    return False


def test_every_name_in_the_map_exists() -> None:
    files = _module_files()
    source = "\n".join(path.read_text() for ps in files.values() for path in ps)
    missing = []
    for token in sorted(set(re.findall(r"`([^`\n]+)`", DOC.read_text()))):
        if token in NOT_MESHLIB or "*" in token:
            continue
        if token.endswith(".py"):
            ok = (
                (ROOT / token).exists() or (MESHLIB / token).exists()
                if "/" in token
                else token[:-3] in files
            )
        elif token.endswith("/"):
            ok = (ROOT / token).is_dir()
        elif re.fullmatch(r"[\w/]+(\.\w+)+", token):
            ok = _resolves(token, files, source)
        elif _IDENTIFIER.fullmatch(token) and ("_" in token or not token.islower()):
            ok = re.search(rf"\b{re.escape(token)}\b", source) is not None
        else:
            continue  # prose in backticks: a call, an option, a header
        if not ok:
            missing.append(token)
    assert missing == [], f"docs/architecture.md names what meshlib does not have: {missing}"


def test_every_module_a_package_map_names_exists() -> None:
    """Each package's docstring map (``:mod:`.name``` or ``:mod:`meshlib.x.y```) names
    modules that exist."""
    missing = []
    for init in sorted(MESHLIB.glob("*/__init__.py")):
        package = _module_of(init.parent / "x.py").rsplit(".", 1)[0]
        doc = init.read_text()
        for name in re.findall(r":mod:`~?([\w.]+)`", doc):
            module = f"{package}{name}" if name.startswith(".") else name
            path = ROOT.joinpath(*module.split("."))
            if not (path.with_suffix(".py").exists() or (path / "__init__.py").exists()):
                missing.append(f"{package}: {name}")
    assert missing == [], f"package maps name modules that do not exist: {missing}"
