"""Baselines, one folder each."""
