"""Triage: the care team's console on the flags in the store.

Triage reads and writes only through :class:`search.store.Store` (posts, flags, and the
accounts of :mod:`triage.accounts`: users, API tokens, sessions, rate-limited logins),
so every app process on one store agrees. ``moments users`` is :mod:`triage.commands`.
"""
