"""The triage app fixtures of ``test_app.py`` (stores, seeded flags and users, servers), for the other test modules.

``test_app.py`` defines them beside the tests that exercise them most; here they are
made visible to every module of ``tests/triage`` without each one importing them.
"""

from test_app import fast_hashing, seeded, server, start_server, store, store_url

__all__ = ["fast_hashing", "seeded", "server", "start_server", "store", "store_url"]
