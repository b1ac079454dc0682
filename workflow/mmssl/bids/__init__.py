"""BIDS input: the raw dataset read as BIDS (entities, sidecars, participants), matched
with its clinical tables into samples, and the per-scan status files collected."""
