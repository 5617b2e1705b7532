"""Differential privacy: accounting and planning, the site's persistent ledger, DP-SGD per round, audits."""
