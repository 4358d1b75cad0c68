"""The report's domain: life cycle, dialog, replies and texts, duplicates, accounts."""
