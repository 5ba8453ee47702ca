"""The zoo version: one definition, read by zoo/__init__ and recorded in every saved config."""
__version__ = "0.1.0"
