"""``Store.get_settings``: one batched read of many settings, the same answer as one ``get_setting`` per key."""

from __future__ import annotations

from datetime import UTC, datetime

from moments.accounts import AppSetting
from search.store import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _setting(key: str, n: int) -> AppSetting:
    return AppSetting(key=key, value={"n": n, "who": {"alice": T0.isoformat()}}, updated_at=T0, updated_by="alice")


def test_get_settings_returns_the_stored_ones_among_the_keys(store: Store) -> None:
    assert store.get_settings([]) == {}
    assert store.get_settings(["presence:nothing"]) == {}  # an empty store (and, on ES, no app index yet)

    # more keys than one chunk (500), stored ones in both chunks, and odd ones: a slash and a colon, a long key
    keys = [f"presence:flag-{i}" for i in range(520)] + ["presence:x/y:z", "p" * 200]
    stored = {n: keys[n] for n in (0, 2, 499, 500, 519, 520, 521)}
    for n, key in stored.items():
        store.put_setting(_setting(key, n))
    store.put_setting(_setting("presence:flag-0", -1))  # replaced: the batch reads the latest

    wanted = [*keys, "presence:missing", keys[0]]  # absent keys and a repeated one
    found = store.get_settings(wanted)

    assert found == {key: store.get_setting(key) for key in stored.values()}
    assert sorted(found) == sorted(stored.values())
    assert found["presence:flag-0"].value["n"] == -1
    assert found["presence:flag-519"].value["n"] == 519  # from the second chunk
    assert found["p" * 200].value["n"] == 521
    assert all(key == setting.key for key, setting in found.items())
