"""Filtering: heuristic rules, identity hygiene, language id, fastText quality, perplexity and
reward scores, and ``thresher filter`` / ``thresher quality``."""
