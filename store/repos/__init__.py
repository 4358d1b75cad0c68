"""Repositories: every SQL statement of the gateway, grouped by the concept it reads or writes."""
