"""Investor API and dashboard."""
