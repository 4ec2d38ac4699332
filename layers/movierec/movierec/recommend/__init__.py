"""Serving recommendations: the tier chain under a deadline, filters, popular and similar movies."""
