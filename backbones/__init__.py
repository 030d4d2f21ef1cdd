"""Backbone zoo (being built)."""
