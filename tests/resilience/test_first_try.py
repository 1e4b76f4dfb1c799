"""A call's first try, decided in one step by the plan: its deadline is the earlier of
the per-try timeout and the call's end, and only the per-try timeout marks it per-try."""

from __future__ import annotations

import time

from meshlib.resilience.call_plan import CallPlan
from meshlib.resilience.retry import RetryPolicy


def test_no_deadline_without_a_call_end_or_a_per_try_timeout() -> None:
    attempt = CallPlan.first_try(RetryPolicy(num_retries=1), None)
    assert attempt.number == 1 and attempt.deadline is None and not attempt.per_try


def test_the_call_end_without_a_per_try_timeout() -> None:
    at = time.monotonic() + 5.0
    attempt = CallPlan.first_try(RetryPolicy(num_retries=1), at)
    assert attempt.deadline is not None and attempt.deadline.at == at
    assert not attempt.per_try


def test_a_per_try_timeout_earlier_than_the_call_end() -> None:
    before = time.monotonic()
    policy = RetryPolicy(num_retries=1, per_try_timeout_s=1.0)
    attempt = CallPlan.first_try(policy, before + 60.0)
    assert attempt.deadline is not None and attempt.per_try
    assert before + 1.0 <= attempt.deadline.at <= time.monotonic() + 1.0


def test_a_per_try_timeout_without_a_call_end() -> None:
    attempt = CallPlan.first_try(RetryPolicy(num_retries=1, per_try_timeout_s=1.0), None)
    assert attempt.deadline is not None and attempt.per_try


def test_the_call_end_when_it_comes_before_the_per_try_timeout() -> None:
    at = time.monotonic() + 0.5
    attempt = CallPlan.first_try(RetryPolicy(num_retries=1, per_try_timeout_s=60.0), at)
    assert attempt.deadline is not None and attempt.deadline.at == at
    assert not attempt.per_try
