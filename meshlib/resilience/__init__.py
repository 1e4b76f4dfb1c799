"""Resilience: deadlines, retries with budgets, breakers, rate limits, faults (issue 4)."""
