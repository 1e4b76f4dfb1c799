"""Who answered (and whose calls the policy denied): counted from the callers' output
lines, printed as a table."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# "[sessions ] GetSession(s-1) -> sessions-v2@50123 (...)": instances follow "->".
_ANSWERED = re.compile(r"-> ((?:[\w.-]+@\d+)(?:, [\w.-]+@\d+)*)")


@dataclass
class Tally:
    """Calls per instance, per caller ("meshlib" app, "grpcio" native client)."""

    # instance -> the callers that must reach it for the demo to count as working
    expected: dict[str, tuple[str, ...]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    # caller -> the calls the servers' policy denied ("-> DENIED ..." lines)
    denied: dict[str, list[str]] = field(default_factory=dict)
    # callers that must see one call denied for the demo to count as working
    expected_denials: set[str] = field(default_factory=set)
    # a plaintext call straight to a sessions instance: refused (True) under STRICT mTLS
    plaintext_refused: bool | None = None

    def expect(self, instance: str, callers: tuple[str, ...] = ("meshlib",)) -> None:
        self.expected[instance] = callers

    def count_line(self, caller: str, line: str) -> None:
        per_instance = self.counts.setdefault(caller, {})
        if "-> DENIED" in line:
            self.denied.setdefault(caller, []).append(line.strip())
            return
        if "-> ERROR" in line:
            self.errors[caller] = self.errors.get(caller, 0) + 1
            return
        match = _ANSWERED.search(line)
        if match is None:
            return
        for instance in match.group(1).split(", "):
            per_instance[instance] = per_instance.get(instance, 0) + 1

    def missing(self) -> list[str]:
        """ "instance (caller)" for every required caller that never reached it."""
        return (
            [
                f"{instance} ({caller})"
                for instance, callers in self.expected.items()
                for caller in callers
                if not self.counts.get(caller, {}).get(instance)
            ]
            + [
                f"a denied call ({caller})"
                for caller in sorted(self.expected_denials - set(self.denied))
            ]
            + (["the plaintext call's refusal"] if self.plaintext_refused is False else [])
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "expected": {name: list(callers) for name, callers in self.expected.items()},
            "counts": self.counts,
            "errors": self.errors,
            "denied": self.denied,
            "plaintext_refused": self.plaintext_refused,
            "missing": self.missing(),
        }


def print_summary(tally: Tally) -> bool:
    """Print calls per instance and caller; True when every instance answered."""
    callers = ("meshlib", "grpcio")
    print("\n== summary: calls answered per instance", flush=True)
    print(f"  {'instance':<26}" + "".join(f"{caller:>10}" for caller in callers))
    instances = list(tally.expected)
    instances += sorted(
        {name for per in tally.counts.values() for name in per} - set(tally.expected)
    )
    for name in instances:
        cells = "".join(f"{tally.counts.get(caller, {}).get(name, 0):>10}" for caller in callers)
        print(f"  {name:<26}{cells}")
    errors = "".join(f"{tally.errors.get(caller, 0):>10}" for caller in callers)
    print(f"  {'failed calls':<26}{errors}")
    denied = "".join(f"{len(tally.denied.get(caller, [])):>10}" for caller in callers)
    print(f"  {'denied by policy':<26}{denied}")
    for caller in callers:
        for line in tally.denied.get(caller, []):
            print(f"  denied ({caller}): {line}")
    missing = tally.missing()
    if not tally.expected:
        print("== no instance started", flush=True)
        return False
    if missing:
        print(f"== NOT every instance answered; missing: {', '.join(missing)}", flush=True)
        return False
    print(f"== every instance answered ({len(tally.expected)} instances)", flush=True)
    if tally.plaintext_refused:
        print("== sessions took mTLS only: the plaintext call was refused", flush=True)
    if tally.expected_denials:
        print("== the policy denied what mesh.yaml does not allow", flush=True)
    return True
