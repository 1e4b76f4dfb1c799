"""Helpers the tests share: start real processes on loopback and clean them up."""
