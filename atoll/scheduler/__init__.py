"""Placement: filters, scores, affinity and consolidation plans. Pure functions, no I/O (later issues)."""
