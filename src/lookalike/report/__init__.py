"""Showing what a scan found: the JSON/CSV/text report and the HTML review page."""
