"""Valuation engine, loan officer API and the `agri` CLI: the composition root."""
