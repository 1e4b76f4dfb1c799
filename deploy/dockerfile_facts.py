"""Read deploy/Dockerfile for build-image.sh and the tests: one reading of it, so the script
runs what the image runs (ENTRYPOINT + CMD, USER, HEALTHCHECK, the build stage's COPY sources).

    python3 deploy/dockerfile_facts.py DOCKERFILE ROOT   # prints bash assignments to eval

ROOT stands for the image's file system: an absolute path in ENTRYPOINT/CMD (a mount or the
volume) moves under it, and 0.0.0.0:PORT becomes 127.0.0.1:0 (a free loopback port).
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path


class DockerfileError(Exception):
    """The Dockerfile says something this reader does not mirror."""


@dataclass
class Stage:
    base: str
    name: str = ""
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, word: str) -> list[str]:
        return [rest for instruction, rest in self.instructions if instruction == word]


@dataclass
class Dockerfile:
    path: Path
    args: dict[str, str]
    stages: list[Stage]

    def last(self, word: str) -> str:
        values = self.stages[-1].values(word)
        if not values:
            raise DockerfileError(f"{self.path}: the final stage has no {word}")
        return values[-1]

    def exec_form(self, word: str) -> list[str]:
        """ENTRYPOINT, CMD or HEALTHCHECK's CMD of the final stage, as an argv."""
        text = self.last(word)
        if word == "HEALTHCHECK":
            parts = re.split(r"(?:^|\s+)CMD\s+", text, maxsplit=1)
            if len(parts) != 2:
                raise DockerfileError(f"{self.path}: HEALTHCHECK has no CMD")
            text = parts[1]
        try:
            argv = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DockerfileError(f"{self.path}: {word} is not in exec (JSON) form: {exc}") from exc
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            raise DockerfileError(f"{self.path}: {word} is not a JSON list of strings")
        return argv

    def copy_sources(self, stage: int = 0) -> list[str]:
        """What a stage COPYs from the build context (into its WORKDIR, under the same name)."""
        sources: list[str] = []
        for rest in self.stages[stage].values("COPY"):
            *names, dest = rest.split()
            for name in names:
                if name.startswith("--") or dest not in ("./", name):
                    raise DockerfileError(
                        f"{self.path}: COPY {rest}: only 'COPY SOURCE... ./' or 'COPY DIR/ DIR/' "
                        "is mirrored by build-image.sh"
                    )
                sources.append(name)
        return sources

    def user(self) -> tuple[int, int]:
        uid, _, gid = self.last("USER").partition(":")
        if not (uid.isdigit() and (gid or uid).isdigit()):
            raise DockerfileError(f"{self.path}: USER must be a numeric UID[:GID]")
        return int(uid), int(gid or uid)


def parse(path: Path) -> Dockerfile:
    """Instructions by stage, backslash continuations joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            base, *name = re.split(r"\s+AS\s+", rest, maxsplit=1, flags=re.IGNORECASE)
            stages.append(Stage(base=base, name="".join(name)))
        elif not stages:
            if word != "ARG":
                raise DockerfileError(f"{path}: {word} before the first FROM")
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append((word, rest))
    if not stages:
        raise DockerfileError(f"{path}: no FROM")
    return Dockerfile(path, args, stages)


def local_argv(argv: list[str], root: str) -> list[str]:
    """The image's command as this machine runs it (see the module docstring)."""
    moved = [re.sub(r"^0\.0\.0\.0:\d+$", "127.0.0.1:0", arg) for arg in argv]
    return [root + arg if arg.startswith("/") else arg for arg in moved]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: dockerfile_facts.py DOCKERFILE ROOT", file=sys.stderr)
        return 2
    try:
        dockerfile = parse(Path(argv[0]))
        uid, gid = dockerfile.user()
        arrays = {
            "COPY_SOURCES": dockerfile.copy_sources(),
            "RUN_ARGV": local_argv(
                dockerfile.exec_form("ENTRYPOINT") + dockerfile.exec_form("CMD"), argv[1]
            ),
            "HEALTH_ARGV": dockerfile.exec_form("HEALTHCHECK"),
        }
    except (OSError, DockerfileError) as exc:
        print(f"dockerfile_facts: {exc}", file=sys.stderr)
        return 1
    for name, values in arrays.items():
        print(f"{name}=({' '.join(map(shlex.quote, values))})")
    print(f"IMAGE_UID={uid}\nIMAGE_GID={gid}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
