"""Flows: the Prefect flows that run crawl -> classify -> index -> flag, and the ``moments`` CLI."""
