"""Synthesis: the OpenAI-compatible client, the resumable job runner, and the identity, answer,
paraphrase and preference generators behind ``thresher synth``."""
