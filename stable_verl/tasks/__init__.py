"""Verifiable tasks: generated problems, verl-schema datasets, teacher styles and rewards."""
