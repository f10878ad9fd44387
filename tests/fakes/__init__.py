"""Fake external tools for tests: programs that behave like ones that cannot be installed here."""
