"""Datasets: readers for the raw formats, builders of the packed store, and splits."""
