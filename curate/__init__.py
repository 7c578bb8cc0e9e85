"""Curation: read and write record files, convert, validate, synthesize, dedup, filter, mix, split."""
