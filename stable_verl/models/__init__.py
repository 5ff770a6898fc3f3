"""Tiny model and tokenizer factories, built locally (nothing is downloaded)."""
