"""Moving a schema-1 store forward: flags that lived inside posts become flag records.

Schema 1 (the first release) kept the care team's flag as ``Post.flag``: status,
priority, score, reasons, velocity, ``flagged_at`` and the rule version. Both
backends call :func:`legacy_flag` on every stored post that still has one, store the
result with its ``migrated`` event, and only then strip the field from the post, so
a migration that dies half-way is simply run again on the next open.
"""

from __future__ import annotations

from typing import Any

from moments.records import FieldChange, Flag, FlagEvent, post_flag_id, render_value

MIGRATION_ACTOR = "moments migrate"


def legacy_flag(post_doc: dict[str, Any]) -> tuple[Flag, FlagEvent] | None:
    """The flag record (and its ``migrated`` event) for a stored schema-1 post, or ``None``.

    Args:
        post_doc: The stored post as JSON (its ``flag`` key is the schema-1 flag).
    """
    old = post_doc.get("flag")
    if not isinstance(old, dict):
        return None
    brands = post_doc.get("brand") or []
    classification = post_doc.get("classification") or {}
    flagged_at = old["flagged_at"]
    flag = Flag.model_validate(
        {
            "id": post_flag_id(post_doc["id"]),
            "kind": "post",
            "brand": brands[0] if brands else None,
            "touchpoint": classification.get("touchpoint"),
            "post_ids": [post_doc["id"]],
            "priority": old["priority"],
            "score": old["score"],
            "reasons": old.get("reasons") or [],
            "velocity_per_hour": old.get("velocity_per_hour"),
            "rule_version": old.get("rule_version"),
            "status": old.get("status", "open"),
            "opened_at": flagged_at,
            # Schema 1 kept no resolution time; the flag time is the best lower bound we have.
            "resolved_at": flagged_at if old.get("status") in ("resolved", "dismissed") else None,
            "updated_at": flagged_at,
            "version": 1,
        }
    )
    event = FlagEvent(
        flag_id=flag.id,
        version=1,
        at=flag.opened_at,
        actor=MIGRATION_ACTOR,
        action="migrated",
        changes=[FieldChange(field=k, old=None, new=render_value(v)) for k, v in sorted(old.items())],
        note="moved out of the post record (schema 1); the values are the post's flag as it was stored",
    )
    return flag, event


def drop_prefix(url: str, prefix: str) -> list[str]:
    """Delete every index and index template of one prefix (tests and benchmarks clean up with this); their names.

    Indices are deleted by name, never by wildcard: a server with
    ``action.destructive_requires_name`` (the default) refuses wildcard deletes. Covers
    every version of the posts and flags indices, the app index and the monthly
    snapshot indices that ``<prefix>-posts-v1``-style cleanups miss.
    """
    from elasticsearch import Elasticsearch, NotFoundError

    client = Elasticsearch(url, request_timeout=30)
    try:
        names = sorted(client.indices.get(index=f"{prefix}-*", allow_no_indices=True, expand_wildcards="all"))
        for start in range(0, len(names), 50):
            client.indices.delete(index=",".join(names[start : start + 50]), ignore_unavailable=True)
        try:
            templates = [t["name"] for t in client.indices.get_index_template(name=f"{prefix}-*")["index_templates"]]
        except NotFoundError:
            templates = []
        for name in templates:
            client.indices.delete_index_template(name=name)
        return names + templates
    finally:
        client.close()
