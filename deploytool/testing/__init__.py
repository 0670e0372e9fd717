"""Helpers for tests: tiny random models built in the test, and numeric assertions."""
