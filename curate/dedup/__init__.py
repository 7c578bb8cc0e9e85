"""Deduplication: exact keys and script-aware shingles, MinHash LSH, clusters, and ``thresher dedup``."""
