"""Fault injection for the tests and the soak campaigns (issue #13)."""
