"""Lethe's own state database: the engine and table registry (db) and the PII inventory store.
"""
