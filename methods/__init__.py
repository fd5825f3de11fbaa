"""Thesis and paper methods, one folder each."""
