from __future__ import annotations

import inspect

import pytest

from meshlib.resilience.degraded import DegradedServices, service_key
from meshlib.resilience.fallback import fallback, fallback_cause


def test_service_keys_are_canonical() -> None:
    assert service_key("xds:///sessions:50051") == "sessions:50051"
    assert service_key("attendees") == "attendees:80"
    assert service_key(" schedule:8080 ") == "schedule:8080"


def test_registry_marks_replaces_and_notifies() -> None:
    registry = DegradedServices()
    seen: list[tuple[str, bool]] = []
    registry.add_listener(lambda service, degraded: seen.append((service, degraded)))
    registry.mark("sessions:50051", True)
    registry.mark("sessions:50051", True)  # no change, no event
    assert registry.is_degraded("xds:///sessions:50051")
    registry.replace({"attendees"})
    assert registry.snapshot() == {"attendees:80"}
    assert seen == [("sessions:50051", True), ("sessions:50051", False), ("attendees:80", True)]


def _whole_schedule(user: str, *, day: int = 1) -> list[str]:
    return [f"all talks day {day}", f"cause={type(fallback_cause()).__name__}"]


def test_sync_fallback_on_failure_gets_the_same_arguments_and_the_cause() -> None:
    @fallback(_whole_schedule, on=ConnectionError)
    def personal_schedule(user: str, *, day: int = 1) -> list[str]:
        raise ConnectionError("sessions down")

    assert personal_schedule("ada", day=2) == ["all talks day 2", "cause=ConnectionError"]
    assert fallback_cause() is None  # only set inside the handler


def test_exceptions_not_listed_propagate() -> None:
    @fallback(_whole_schedule, on=ConnectionError)
    def personal_schedule(user: str, *, day: int = 1) -> list[str]:
        raise KeyError(user)

    with pytest.raises(KeyError):
        personal_schedule("ada")


def test_degraded_service_falls_back_without_calling() -> None:
    registry = DegradedServices()
    calls: list[str] = []

    @fallback(_whole_schedule, service="sessions:50051", registry=registry)
    def personal_schedule(user: str, *, day: int = 1) -> list[str]:
        calls.append(user)
        return [f"{user}'s talks"]

    assert personal_schedule("ada") == ["ada's talks"]
    registry.mark("sessions:50051", True)
    assert personal_schedule("bob") == ["all talks day 1", "cause=NoneType"]
    registry.mark("sessions:50051", False)
    assert personal_schedule("cy") == ["cy's talks"]
    assert calls == ["ada", "cy"]


async def test_async_fallback_on_failure_and_degraded() -> None:
    registry = DegradedServices()

    async def whole(user: str) -> str:
        return f"all ({type(fallback_cause()).__name__})"

    @fallback(whole, on=TimeoutError, service="sessions:50051", registry=registry)
    async def personal(user: str) -> str:
        raise TimeoutError

    assert inspect.iscoroutinefunction(personal)
    assert await personal("ada") == "all (TimeoutError)"
    registry.mark("sessions:50051", True)
    assert await personal("ada") == "all (NoneType)"


def test_async_function_needs_an_async_handler() -> None:
    with pytest.raises(TypeError, match="async function"):

        @fallback(_whole_schedule)  # type: ignore[arg-type]
        async def personal_schedule(user: str, *, day: int = 1) -> list[str]:
            return []
