"""Plumbing every package shares: UTC time columns and parsing, atomic file writes, the
database retry policy and JSON-ready rows. It imports none of the domain packages."""
