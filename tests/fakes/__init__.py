"""Fake upstream vendors: real HTTP servers speaking the vendors' wire formats."""
