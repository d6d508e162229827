"""Kibana saved objects for Moments: data views, saved searches, Lens charts and a dashboard, built from code.

For the README (Kibana section):

    `moments kibana export -o moments-kibana.ndjson` writes saved objects (NDJSON) for Kibana 8.8+/9.x:
    data views for posts (`moments-posts`, time field `created_at`) and flags (`moments-flags`, time
    field `opened_at`); the saved searches "Misery, last 24 h" and "Open flags by priority"; four Lens
    charts (volume by touchpoint × moment over time, sentiment over time, share of misery per
    touchpoint, top viral negatives); and the "Moments of truth" dashboard holding all six.
    Import them in Kibana (Stack Management → Saved objects → Import), or with
    `moments kibana import --kibana-url https://kibana:5601 [--space S] [--overwrite]`, which
    posts them to Kibana's `/api/saved_objects/_import` and prints `successCount` and every error
    (credentials: `https://user:pass@host` in the URL, or an API key in `$MOMENTS_KIBANA_API_KEY`).
    Ids are stable (`moments-posts`, `moments-misery-24h` ...), so importing again with --overwrite
    updates them in place. With `$MOMENTS_ES_PREFIX` set, names and ids follow that prefix.
    Kibana itself does not run in the test suite. The tests check the NDJSON the way Elastic's
    package-spec validators do (every JSON string decodes, every reference and `panelRefName`
    resolves, no id collides, migration versions present), and against the real Elasticsearch:
    every charted field exists in the live mapping and is aggregatable, and each saved search's
    query returns exactly the seeded posts or flags it should.

Public surface:

* :func:`saved_objects`: the saved objects as dicts, for an index prefix.
* :func:`export_ndjson`: the same as NDJSON (one object per line, what Kibana's import takes).
* :func:`import_objects` -> :class:`ImportReport`: POST them to Kibana's saved objects import API.
* :func:`validate_objects`: structural problems (no Elasticsearch needed).
* :func:`check_assets`: those plus the checks against a live Elasticsearch.
* :func:`kql_to_query`: the small KQL subset the saved searches use, as Elasticsearch Query DSL.

Every field a chart or search names is looked up in the mapping derived from the schema
(:func:`search.mapping.es_mapping`) when the objects are built, so a renamed field fails
here, not in a customer's Kibana.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from moments import settings
from moments.errors import UsageError, WorkFailed
from moments.records import Post
from search.mapping import StoredFlag, es_mapping, index_names

#: Saved objects are written in the 8.8+ format (``coreMigrationVersion``/``typeMigrationVersion``);
#: Kibana migrates them forward on import, 9.x included.
CORE_MIGRATION_VERSION = "8.8.0"
#: The latest migration each type had when 8.8/8.9 wrote it, as Kibana's own exports show.
TYPE_MIGRATION_VERSIONS: dict[str, str] = {
    "index-pattern": "8.0.0",
    "search": "8.0.0",
    "lens": "8.9.0",
    "dashboard": "8.9.0",
}
#: The panel version Kibana writes into a dashboard's panelsJSON.
PANEL_VERSION = "8.8.0"

#: JSON documents Kibana stores as strings inside ``attributes`` (dotted paths).
JSON_STRING_FIELDS = (
    "visState",
    "uiStateJSON",
    "panelsJSON",
    "optionsJSON",
    "fields",
    "fieldFormatMap",
    "fieldAttrs",
    "runtimeFieldMap",
    "sourceFilters",
    "typeMeta",
    "kibanaSavedObjectMeta.searchSourceJSON",
)

#: Lens's pseudo-field for "count of records"; not a mapping field.
RECORDS_FIELD = "___records___"
#: Elasticsearch field types a chart can bucket or aggregate on.
AGGREGATABLE_TYPES = frozenset(
    {
        "keyword",
        "constant_keyword",
        "date",
        "date_nanos",
        "boolean",
        "long",
        "integer",
        "short",
        "byte",
        "double",
        "float",
        "half_float",
        "scaled_float",
        "unsigned_long",
        "ip",
    }
)

_SEARCH_INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"
_LAYER_REF_PREFIX = "indexpattern-datasource-layer-"
#: Namespace of the deterministic Lens layer and column ids (uuid5), so every export is byte-identical.
_ID_NAMESPACE = uuid.UUID("6f1c2d1e-8a59-4f0e-9a57-6d6f6d656e74")

Kind = Literal["posts", "flags"]


# --------------------------------------------------------------------------- fields from the schema


def _field_types(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted field path -> Elasticsearch type, through objects and multi-fields (``text.keyword``)."""
    types: dict[str, str] = {}
    for name, body in mapping.get("properties", {}).items():
        path = f"{prefix}{name}"
        if body.get("type") == "nested":
            continue  # Lens and Discover cannot chart nested fields; never offered
        if "properties" in body:
            types.update(_field_types(body, f"{path}."))
        elif body.get("enabled") is not False and "type" in body and body["type"] != "object":
            types[path] = body["type"]
            for sub, sub_body in body.get("fields", {}).items():
                types[f"{path}.{sub}"] = sub_body["type"]
    return types


_SCHEMA_FIELDS: dict[Kind, dict[str, str]] = {
    "posts": _field_types(es_mapping(Post)),
    "flags": _field_types(es_mapping(StoredFlag)),
}


def _field(kind: Kind, path: str) -> str:
    """``path`` after checking it is in the schema-derived mapping of ``kind``."""
    if path not in _SCHEMA_FIELDS[kind]:
        raise KeyError(f"{path} is not a field of the {kind} mapping (search/mapping.py)")
    return path


def _lens_data_type(kind: Kind, path: str) -> str:
    es_type = _SCHEMA_FIELDS[kind][path]
    if es_type in ("keyword", "text"):
        return "string"
    if es_type == "date":
        return "date"
    if es_type == "boolean":
        return "boolean"
    return "number"


# --------------------------------------------------------------------------- KQL (the subset we write)

_KQL_CLAUSE = re.compile(
    r'^\s*(?P<field>[A-Za-z_][\w.]*)\s*(?P<op>:|>=|<=|>|<)\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s"()]+))\s*$'
)
_RANGE_OPS = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}


def kql_clauses(kql: str) -> list[tuple[str, str, str]]:
    """``field : "value"`` / ``field >= value`` clauses joined by ``and``, as (field, operator, value).

    Raises:
        ValueError: for anything outside that subset (``or``, ``not``, wildcards, free text), so a
            saved search that could not be checked faithfully is never passed as checked.
    """
    if not kql.strip():
        return []
    clauses: list[tuple[str, str, str]] = []
    # Split on "and" outside quoted values; each part must then be exactly one clause, so
    # "or", "not" and parentheses never match and are refused.
    for part in re.split(r'\s+and\s+(?=(?:[^"]*"[^"]*")*[^"]*$)', kql.strip(), flags=re.IGNORECASE):
        match = _KQL_CLAUSE.match(part)
        if match is None:
            raise ValueError(f"KQL outside the supported subset: {part!r}")
        value = match["quoted"] if match["quoted"] is not None else match["bare"]
        if match["quoted"] is None and "*" in value:
            raise ValueError(f"KQL wildcards are outside the supported subset: {part!r}")
        clauses.append((match["field"], match["op"], re.sub(r"\\(.)", r"\1", value)))
    return clauses


def kql_to_query(kql: str) -> dict[str, Any]:
    """The Elasticsearch query Kibana builds for a KQL string of :func:`kql_clauses`' subset.

    ``field : "v"`` becomes ``match_phrase`` (what KQL sends for a quoted value), a comparison a
    ``range``, and ``and`` a ``bool`` filter; an empty query matches everything.
    """
    clauses = kql_clauses(kql)
    if not clauses:
        return {"match_all": {}}
    compiled: list[dict[str, Any]] = []
    for name, op, value in clauses:
        if op == ":":
            compiled.append({"match_phrase": {name: value}})
        else:
            compiled.append({"range": {name: {_RANGE_OPS[op]: value}}})
    return compiled[0] if len(compiled) == 1 else {"bool": {"filter": compiled}}


# --------------------------------------------------------------------------- builders


@dataclass(frozen=True)
class _Names:
    """Ids, titles and aliases for one index prefix."""

    prefix: str

    @property
    def posts_alias(self) -> str:
        return index_names(self.prefix, "posts")[1]

    @property
    def flags_alias(self) -> str:
        return index_names(self.prefix, "flags")[1]

    def id(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def title(self, title: str) -> str:
        # Two prefixes imported into one space stay tellable apart.
        return title if self.prefix == settings.DEFAULT_ES_PREFIX else f"{title} [{self.prefix}]"


def _stable_uuid(*parts: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(parts)))


def _envelope(object_type: str, object_id: str, attributes: dict[str, Any], references: list[dict[str, str]]) -> dict:
    return {
        "id": object_id,
        "type": object_type,
        "attributes": attributes,
        "references": references,
        "managed": False,
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "typeMigrationVersion": TYPE_MIGRATION_VERSIONS[object_type],
    }


def _data_view(
    names: _Names, kind: Kind, time_field: str, *, formats: Mapping[str, str], hidden: Sequence[str]
) -> dict:
    title = names.posts_alias if kind == "posts" else names.flags_alias
    attributes = {
        "title": title,
        "name": names.title(f"Moments {kind}"),
        "timeFieldName": _field(kind, time_field),
        "fields": "[]",
        "fieldFormatMap": json.dumps({_field(kind, f): {"id": fmt} for f, fmt in formats.items()}),
        "fieldAttrs": "{}",
        "runtimeFieldMap": "{}",
        # Hidden in Discover: fields that are long and never read there (a flag's event log).
        "sourceFilters": json.dumps([{"value": f} for f in hidden]),
        "typeMeta": "{}",
        "allowNoIndex": True,
    }
    return _envelope("index-pattern", names.id(kind), attributes, [])


def _saved_search(
    names: _Names,
    name: str,
    title: str,
    description: str,
    kind: Kind,
    kql: str,
    columns: Sequence[str],
    sort: Sequence[tuple[str, str]],
) -> dict:
    for clause_field, _, _ in kql_clauses(kql):
        _field(kind, clause_field)
    search_source = {
        "query": {"query": kql, "language": "kuery"},
        "filter": [],
        "indexRefName": _SEARCH_INDEX_REF,
    }
    attributes = {
        "title": names.title(title),
        "description": description,
        "columns": [_field(kind, c) for c in columns],
        "sort": [[_field(kind, f), direction] for f, direction in sort],
        "grid": {},
        "hideChart": False,
        "isTextBasedQuery": False,
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(search_source)},
    }
    references = [{"id": names.id(kind), "name": _SEARCH_INDEX_REF, "type": "index-pattern"}]
    return _envelope("search", names.id(name), attributes, references)


class _Layer:
    """One Lens form-based layer over a data view, its columns added in order."""

    def __init__(self, object_id: str, kind: Kind) -> None:
        self.object_id = object_id
        self.kind = kind
        self.id = _stable_uuid(object_id, "layer")
        self.columns: dict[str, dict[str, Any]] = {}

    def _add(self, name: str, column: dict[str, Any]) -> str:
        column_id = _stable_uuid(self.object_id, "column", name)
        self.columns[column_id] = column
        return column_id

    def date_histogram(self, path: str) -> str:
        return self._add(
            path,
            {
                "label": path,
                "dataType": "date",
                "operationType": "date_histogram",
                "sourceField": _field(self.kind, path),
                "isBucketed": True,
                "scale": "interval",
                "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
            },
        )

    def count(self, label: str = "Posts") -> str:
        return self._add(
            "count",
            {
                "label": label,
                "customLabel": True,
                "dataType": "number",
                "operationType": "count",
                "sourceField": RECORDS_FIELD,
                "isBucketed": False,
                "scale": "ratio",
                "params": {"emptyAsNull": True},
            },
        )

    def metric(self, operation: str, path: str, label: str) -> str:
        return self._add(
            f"{operation}:{path}",
            {
                "label": label,
                "customLabel": True,
                "dataType": "number",
                "operationType": operation,
                "sourceField": _field(self.kind, path),
                "isBucketed": False,
                "scale": "ratio",
                "params": {"emptyAsNull": True},
            },
        )

    def terms(self, path: str, order_by: str, *, size: int, label: str, secondary: Sequence[str] = ()) -> str:
        params: dict[str, Any] = {
            "size": size,
            "orderBy": {"type": "column", "columnId": order_by},
            "orderDirection": "desc",
            "otherBucket": True,
            "missingBucket": False,
            "parentFormat": {"id": "terms"},
            "include": [],
            "exclude": [],
            "includeIsRegex": False,
            "excludeIsRegex": False,
        }
        if secondary:
            # Multi-terms: one series per (touchpoint, moment) pair.
            params["secondaryFields"] = [_field(self.kind, s) for s in secondary]
            params["parentFormat"] = {"id": "multi_terms"}
        return self._add(
            path,
            {
                "label": label,
                "customLabel": True,
                "dataType": _lens_data_type(self.kind, path),
                "operationType": "terms",
                "sourceField": _field(self.kind, path),
                "isBucketed": True,
                "scale": "ordinal",
                "params": params,
            },
        )

    def state(self, column_order: Sequence[str]) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "columnOrder": list(column_order),
            "incompleteColumns": {},
            "sampling": 1,
        }


def _lens(
    names: _Names,
    name: str,
    title: str,
    description: str,
    layer: _Layer,
    column_order: Sequence[str],
    visualization_type: str,
    visualization: dict[str, Any],
    kql: str = "",
) -> dict:
    for clause_field, _, _ in kql_clauses(kql):
        _field(layer.kind, clause_field)
    state = {
        "adHocDataViews": {},
        "internalReferences": [],
        "filters": [],
        "query": {"query": kql, "language": "kuery"},
        "datasourceStates": {
            "formBased": {"layers": {layer.id: layer.state(column_order)}},
            "textBased": {"layers": {}},
        },
        "visualization": visualization,
    }
    attributes = {
        "title": names.title(title),
        "description": description,
        "visualizationType": visualization_type,
        "state": state,
    }
    references = [{"id": names.id(layer.kind), "name": f"{_LAYER_REF_PREFIX}{layer.id}", "type": "index-pattern"}]
    return _envelope("lens", names.id(name), attributes, references)


def _xy(layer: _Layer, series_type: str, x: str, accessors: Sequence[str], split: str | None) -> dict[str, Any]:
    data_layer: dict[str, Any] = {
        "layerId": layer.id,
        "layerType": "data",
        "seriesType": series_type,
        "xAccessor": x,
        "accessors": list(accessors),
        "palette": {"type": "palette", "name": "default"},
    }
    if split is not None:
        data_layer["splitAccessor"] = split
    visible = {"x": True, "yLeft": True, "yRight": True}
    return {
        "legend": {"isVisible": True, "position": "right"},
        "valueLabels": "hide",
        "fittingFunction": "None",
        "preferredSeriesType": series_type,
        "axisTitlesVisibilitySettings": visible,
        "tickLabelsVisibilitySettings": visible,
        "gridlinesVisibilitySettings": visible,
        "labelsOrientation": {"x": 0, "yLeft": 0, "yRight": 0},
        "layers": [data_layer],
    }


def _volume_by_touchpoint_moment(names: _Names) -> dict:
    layer = _Layer(names.id("volume-by-touchpoint-moment"), "posts")
    when = layer.date_histogram("created_at")
    posts = layer.count()
    split = layer.terms(
        "classification.touchpoint", posts, size=10, label="Touchpoint × moment", secondary=["classification.moment"]
    )
    return _lens(
        names,
        "volume-by-touchpoint-moment",
        "Volume by touchpoint × moment",
        "Posts over time, one series per touchpoint and moment (magic, misery, neutral).",
        layer,
        [split, when, posts],
        "lnsXY",
        _xy(layer, "bar_stacked", when, [posts], split),
    )


def _sentiment_over_time(names: _Names) -> dict:
    layer = _Layer(names.id("sentiment-over-time"), "posts")
    when = layer.date_histogram("created_at")
    posts = layer.count()
    split = layer.terms("classification.sentiment", posts, size=3, label="Sentiment")
    return _lens(
        names,
        "sentiment-over-time",
        "Sentiment over time",
        "Posts over time by sentiment (negative, neutral, positive).",
        layer,
        [split, when, posts],
        "lnsXY",
        _xy(layer, "area_stacked", when, [posts], split),
    )


def _misery_share(names: _Names) -> dict:
    layer = _Layer(names.id("misery-share-by-touchpoint"), "posts")
    posts = layer.count()
    touchpoint = layer.terms("classification.touchpoint", posts, size=20, label="Touchpoint")
    moment = layer.terms("classification.moment", posts, size=3, label="Moment")
    # A 100 % stacked bar per touchpoint: the misery segment is the share of misery.
    visualization = _xy(layer, "bar_horizontal_percentage_stacked", touchpoint, [posts], moment)
    return _lens(
        names,
        "misery-share-by-touchpoint",
        "Share of misery per touchpoint",
        "For each touchpoint, the share of its posts that are moments of misery, magic or neutral.",
        layer,
        [touchpoint, moment, posts],
        "lnsXY",
        visualization,
    )


def _top_viral_negatives(names: _Names) -> dict:
    layer = _Layer(names.id("top-viral-negatives"), "posts")
    shares = layer.metric("max", "engagement.shares", "Shares")
    likes = layer.metric("max", "engagement.likes", "Likes")
    replies = layer.metric("max", "engagement.replies", "Replies")
    reach = layer.metric("max", "author.followers", "Author followers")
    post = layer.terms("url", shares, size=20, label="Post")
    visualization = {
        "layerId": layer.id,
        "layerType": "data",
        "columns": [{"columnId": c, "isTransposed": False} for c in (post, shares, likes, replies, reach)],
        "sorting": {"columnId": shares, "direction": "desc"},
    }
    return _lens(
        names,
        "top-viral-negatives",
        "Top viral negatives",
        "Negative posts with the most shares, then their likes, replies and the author's followers.",
        layer,
        [post, shares, likes, replies, reach],
        "lnsDatatable",
        visualization,
        kql='classification.sentiment : "negative"',
    )


def _dashboard(names: _Names, panels: Sequence[tuple[dict, tuple[int, int, int, int]]]) -> dict:
    panels_json: list[dict[str, Any]] = []
    references: list[dict[str, str]] = []
    for n, (target, (x, y, w, h)) in enumerate(panels):
        panel_index = str(n)
        panels_json.append(
            {
                "version": PANEL_VERSION,
                "type": target["type"],
                "gridData": {"x": x, "y": y, "w": w, "h": h, "i": panel_index},
                "panelIndex": panel_index,
                "embeddableConfig": {"enhancements": {}},
                "panelRefName": f"panel_{n}",
            }
        )
        references.append({"id": target["id"], "name": f"panel_{n}", "type": target["type"]})
    attributes = {
        "title": names.title("Moments of truth"),
        "description": "What customers say about the brand: volume, sentiment and misery by touchpoint, "
        "the negative posts that spread, and the care team's open flags.",
        "panelsJSON": json.dumps(panels_json),
        "optionsJSON": json.dumps(
            {
                "useMargins": True,
                "syncColors": False,
                "syncCursor": True,
                "syncTooltips": False,
                "hidePanelTitles": False,
            }
        ),
        "timeRestore": True,
        "timeFrom": "now-7d",
        "timeTo": "now",
        "refreshInterval": {"pause": True, "value": 60000},
        "kibanaSavedObjectMeta": {
            "searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"}, "filter": []})
        },
    }
    return _envelope("dashboard", names.id("of-truth"), attributes, references)


def saved_objects(prefix: str | None = None) -> list[dict[str, Any]]:
    """Every Moments saved object, dependencies first (data views, searches, Lens, dashboard).

    Args:
        prefix: Index prefix the data views point at (default ``$MOMENTS_ES_PREFIX``, else
            ``moments``); it also prefixes every id, so two prefixes can share a Kibana space.

    Returns:
        Saved objects in Kibana's export format; JSON-in-a-string attributes already encoded.
    """
    names = _Names(settings.es_prefix(prefix))
    posts_view = _data_view(names, "posts", "created_at", formats={"url": "url"}, hidden=())
    flags_view = _data_view(names, "flags", "opened_at", formats={}, hidden=("events",))
    misery = _saved_search(
        names,
        "misery-24h",
        "Misery, last 24 h",
        "Moments of misery posted in the last 24 hours, newest first.",
        "posts",
        'classification.moment : "misery" and created_at >= "now-24h"',
        ["source", "classification.touchpoint", "classification.sentiment", "classification.severity", "text", "url"],
        [("created_at", "desc")],
    )
    open_flags = _saved_search(
        names,
        "open-flags-by-priority",
        "Open flags by priority",
        "The care team's open flags: P1 first, then by score.",
        "flags",
        'status : "open"',
        ["priority", "score", "brand", "touchpoint", "kind", "reasons", "assignee", "post_ids"],
        [("priority", "asc"), ("score", "desc")],
    )
    volume = _volume_by_touchpoint_moment(names)
    sentiment = _sentiment_over_time(names)
    share = _misery_share(names)
    viral = _top_viral_negatives(names)
    dashboard = _dashboard(
        names,
        [
            (volume, (0, 0, 48, 15)),
            (sentiment, (0, 15, 24, 15)),
            (share, (24, 15, 24, 15)),
            (viral, (0, 30, 48, 15)),
            (misery, (0, 45, 24, 15)),
            (open_flags, (24, 45, 24, 15)),
        ],
    )
    return [posts_view, flags_view, misery, open_flags, volume, sentiment, share, viral, dashboard]


def export_ndjson(objects: Iterable[Mapping[str, Any]] | None = None, *, prefix: str | None = None) -> str:
    """Saved objects as NDJSON, one per line with keys sorted, so two exports diff cleanly."""
    chosen = list(objects) if objects is not None else saved_objects(prefix)
    return "".join(json.dumps(obj, sort_keys=True, ensure_ascii=False) + "\n" for obj in chosen)


def parse_ndjson(text: str) -> list[dict[str, Any]]:
    """NDJSON back to objects, skipping blank lines and Kibana's trailing export summary line.

    Raises:
        UsageError: a line is not a JSON object (named by line number).
    """
    objects: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"line {number} is not JSON: {exc.msg}") from None
        if not isinstance(value, dict):
            raise UsageError(f"line {number} is not a JSON object")
        if "exportedCount" in value and "type" not in value:
            continue
        objects.append(value)
    return objects


# --------------------------------------------------------------------------- checks


def _attribute(attributes: Mapping[str, Any], dotted: str) -> Any:
    value: Any = attributes
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _label(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('type')}/{obj.get('id')}"


def _decode(obj: Mapping[str, Any], dotted: str, problems: list[str]) -> Any:
    """The decoded JSON string at ``attributes.<dotted>`` (``None`` when absent), noting a bad one."""
    raw = _attribute(obj.get("attributes", {}), dotted)
    if raw is None:
        return None
    if not isinstance(raw, str):
        problems.append(f"{_label(obj)}: {dotted} must be a JSON string, got {type(raw).__name__}")
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        problems.append(f"{_label(obj)}: {dotted} is not valid JSON ({exc.msg})")
        return None


def _lens_layers(obj: Mapping[str, Any], problems: list[str]) -> dict[str, dict[str, Any]]:
    state = obj.get("attributes", {}).get("state")
    if isinstance(state, str):  # some exports stringify it
        try:
            state = json.loads(state)
        except json.JSONDecodeError as exc:
            problems.append(f"{_label(obj)}: state is not valid JSON ({exc.msg})")
            return {}
    if not isinstance(state, Mapping):
        problems.append(f"{_label(obj)}: Lens state missing")
        return {}
    layers = state.get("datasourceStates", {}).get("formBased", {}).get("layers", {})
    return dict(layers) if isinstance(layers, Mapping) else {}


def validate_objects(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """Structural problems, as elastic/package-spec's semantic validators find them; empty when none.

    Checks: ids are unique per type and non-empty; ``coreMigrationVersion`` and
    ``typeMigrationVersion`` are present; every JSON string attribute decodes; every reference
    names an object in ``objects`` (no dangling ids, data views included); a saved search's
    ``indexRefName``, each Lens layer's ``indexpattern-datasource-layer-<id>`` and each
    dashboard panel's ``panelRefName`` resolve to a reference; every Lens column the
    visualization names exists in its layer.
    """
    problems: list[str] = []
    known: set[tuple[str, str]] = set()
    for obj in objects:
        key = (str(obj.get("type", "")), str(obj.get("id", "")))
        if not key[0] or not key[1]:
            problems.append(f"{_label(obj)}: missing id or type")
        if key in known:
            problems.append(f"{_label(obj)}: id collides with another {key[0]}")
        known.add(key)
        for version in ("coreMigrationVersion", "typeMigrationVersion"):
            if not obj.get(version):
                problems.append(f"{_label(obj)}: {version} missing")
    ids = {object_id for _, object_id in known}
    for obj in objects:
        label = _label(obj)
        references = obj.get("references", [])
        ref_names = [ref.get("name") for ref in references]
        if len(ref_names) != len(set(ref_names)):
            problems.append(f"{label}: duplicate reference names")
        for ref in references:
            if (ref.get("type"), ref.get("id")) not in known:
                kind = "missing" if ref.get("id") not in ids else "of another type"
                target = f"{ref.get('type')}/{ref.get('id')}"
                problems.append(f"{label}: dangling reference {ref.get('name')} -> {target} ({kind})")
        decoded = {dotted: _decode(obj, dotted, problems) for dotted in JSON_STRING_FIELDS}
        search_source = decoded["kibanaSavedObjectMeta.searchSourceJSON"]
        index_ref = search_source.get("indexRefName") if isinstance(search_source, Mapping) else None
        if index_ref is not None and index_ref not in ref_names:
            problems.append(f"{label}: indexRefName {index_ref} has no reference")
        if obj.get("type") == "search" and index_ref is None:
            problems.append(f"{label}: saved search without a data view (indexRefName)")
        if obj.get("type") == "lens":
            layers = _lens_layers(obj, problems)
            if not layers:
                problems.append(f"{label}: Lens without a form-based layer")
            for layer_id, layer in layers.items():
                if f"{_LAYER_REF_PREFIX}{layer_id}" not in ref_names:
                    problems.append(f"{label}: layer {layer_id} has no {_LAYER_REF_PREFIX}{layer_id} reference")
                columns = layer.get("columns", {})
                for column_id in layer.get("columnOrder", []):
                    if column_id not in columns:
                        problems.append(f"{label}: columnOrder names unknown column {column_id}")
                for column in columns.values():
                    order_by = column.get("params", {}).get("orderBy", {})
                    if order_by.get("type") == "column" and order_by.get("columnId") not in columns:
                        problems.append(f"{label}: terms ordered by unknown column {order_by.get('columnId')}")
            all_columns = {c for layer in layers.values() for c in layer.get("columns", {})}
            for accessor in _visualization_accessors(obj):
                if accessor not in all_columns:
                    problems.append(f"{label}: visualization uses unknown column {accessor}")
        panels = decoded["panelsJSON"]
        if obj.get("type") == "dashboard" and not isinstance(panels, list):
            problems.append(f"{label}: panelsJSON must be a JSON array")
        for panel in panels if isinstance(panels, list) else []:
            name = panel.get("panelRefName")
            if name is None:
                continue
            # Kibana 8.x first looks at references prefixed "<panelIndex>:", else at all of them.
            prefix = f"{panel.get('panelIndex')}:"
            scoped = [ref.removeprefix(prefix) for ref in ref_names if isinstance(ref, str) and ref.startswith(prefix)]
            if name not in (scoped or ref_names):
                problems.append(f"{label}: panelRefName {name} has no reference")
    return problems


def _visualization_accessors(obj: Mapping[str, Any]) -> list[str]:
    state = obj.get("attributes", {}).get("state")
    if isinstance(state, str):
        state = json.loads(state)
    visualization = state.get("visualization", {}) if isinstance(state, Mapping) else {}
    accessors: list[str] = []
    for layer in visualization.get("layers", []):
        accessors.extend(layer.get("accessors", []))
        accessors.extend(a for a in (layer.get("xAccessor"), layer.get("splitAccessor")) if a)
    accessors.extend(c["columnId"] for c in visualization.get("columns", []) if "columnId" in c)
    return accessors


@dataclass(frozen=True)
class FieldUse:
    """A field an object names: where, and whether it must be aggregatable (charted, sorted on)."""

    object_label: str
    data_view_id: str
    field: str
    aggregatable: bool


def field_uses(objects: Sequence[Mapping[str, Any]]) -> list[FieldUse]:
    """Every field the data views, saved searches and Lens charts name, with the data view it is read from."""
    uses: list[FieldUse] = []
    for obj in objects:
        label, attributes = _label(obj), obj.get("attributes", {})
        refs = {ref.get("name"): ref.get("id") for ref in obj.get("references", [])}
        if obj.get("type") == "index-pattern" and attributes.get("timeFieldName"):
            uses.append(FieldUse(label, str(obj["id"]), attributes["timeFieldName"], True))
        elif obj.get("type") == "search":
            view = str(refs.get(_SEARCH_INDEX_REF))
            uses.extend(FieldUse(label, view, c, False) for c in attributes.get("columns", []))
            uses.extend(FieldUse(label, view, f, True) for f, _ in attributes.get("sort", []))
            source = json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])
            uses.extend(FieldUse(label, view, f, False) for f, _, _ in kql_clauses(source["query"]["query"]))
        elif obj.get("type") == "lens":
            state = attributes["state"] if isinstance(attributes["state"], Mapping) else json.loads(attributes["state"])
            query = state.get("query", {}).get("query", "")
            for layer_id, layer in state["datasourceStates"]["formBased"]["layers"].items():
                view = str(refs.get(f"{_LAYER_REF_PREFIX}{layer_id}"))
                uses.extend(FieldUse(label, view, f, False) for f, _, _ in kql_clauses(query))
                for column in layer["columns"].values():
                    if column.get("sourceField") and column["sourceField"] != RECORDS_FIELD:
                        uses.append(FieldUse(label, view, column["sourceField"], True))
                    secondary = column.get("params", {}).get("secondaryFields", [])
                    uses.extend(FieldUse(label, view, s, True) for s in secondary)
    return uses


def check_assets(
    objects: Sequence[Mapping[str, Any]],
    es_client: Any,
    posts_alias: str | None = None,
    flags_alias: str | None = None,
) -> list[str]:
    """:func:`validate_objects` plus checks against a live Elasticsearch; empty when all pass.

    Args:
        objects: The saved objects (:func:`saved_objects`).
        es_client: An ``elasticsearch.Elasticsearch`` client.
        posts_alias: When given, the posts data view must point at it; likewise ``flags_alias``.

    Checks, beyond the structural ones: every data view's title resolves to an index; every
    field a chart, sort, query or column names exists there (``field_caps``), and a charted or
    sorted one is aggregatable with a keyword, numeric or date type; every saved search's query
    (:func:`kql_to_query`) runs on its data view without error.
    """
    problems = validate_objects(objects)
    views = {str(o["id"]): o["attributes"]["title"] for o in objects if o.get("type") == "index-pattern"}
    for alias, suffix in ((posts_alias, "posts"), (flags_alias, "flags")):
        if alias is not None and alias not in views.values():
            problems.append(f"no data view points at the {suffix} alias {alias} (data views: {sorted(views.values())})")
    caps: dict[str, dict[str, Any]] = {}
    for view_id, title in views.items():
        response = dict(es_client.field_caps(index=title, fields="*", ignore_unavailable=True))
        if not response.get("indices"):
            problems.append(f"index-pattern/{view_id}: {title} matches no index")
        caps[view_id] = response.get("fields", {})
    for use in field_uses(objects):
        fields = caps.get(use.data_view_id)
        if fields is None:
            problems.append(f"{use.object_label}: reads data view {use.data_view_id}, which is not exported")
            continue
        by_type = fields.get(use.field)
        if not by_type:
            problems.append(f"{use.object_label}: field {use.field} is not in the mapping of {views[use.data_view_id]}")
            continue
        if use.aggregatable:
            bad = [t for t, cap in by_type.items() if t not in AGGREGATABLE_TYPES or not cap.get("aggregatable")]
            if bad:
                kinds = ", ".join(sorted(bad))
                problems.append(f"{use.object_label}: field {use.field} is charted but is {kinds}, not aggregatable")
    for obj in objects:
        if obj.get("type") != "search":
            continue
        source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        view = next(ref["id"] for ref in obj["references"] if ref["name"] == _SEARCH_INDEX_REF)
        if view not in views:
            continue
        try:
            es_client.count(index=views[view], query=kql_to_query(source["query"]["query"]))
        except Exception as exc:  # any refusal is a finding to report, not a crash of the check
            problems.append(f"{_label(obj)}: query fails on {views[view]}: {exc}")
    return problems


# --------------------------------------------------------------------------- import


@dataclass
class ImportReport:
    """What Kibana's ``_import`` answered."""

    success: bool
    success_count: int
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.success and not self.errors

    def error_lines(self) -> list[str]:
        """One line per error: the object, its title and why (conflict, missing references ...)."""
        lines = []
        for error in self.errors:
            detail = error.get("error", {})
            why = str(detail.get("type", "unknown"))
            if detail.get("references"):
                why += ": " + ", ".join(f"{r.get('type')}/{r.get('id')}" for r in detail["references"])
            if detail.get("message"):
                why += f": {detail['message']}"
            title = error.get("meta", {}).get("title") or error.get("title")
            named = f" ({title})" if title else ""
            lines.append(f"{error.get('type')}/{error.get('id')}{named}: {why}")
        return lines


_SPACE_ID = re.compile(r"^[a-z0-9_-]+$")


def import_url(kibana_url: str, *, space: str | None = None, overwrite: bool = False) -> str:
    """The ``_import`` endpoint for a Kibana base URL and space.

    Raises:
        UsageError: not an http(s) URL, or a space id Kibana would not accept.
    """
    parts = urlsplit(kibana_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--kibana-url must be an http(s) URL, got {kibana_url!r}")
    if space is not None and not _SPACE_ID.match(space):
        raise UsageError(f"--space must be a Kibana space id (lower-case letters, digits, _ and -), got {space!r}")
    path = parts.path.rstrip("/")
    if space is not None and space != "default":
        path += f"/s/{quote(space)}"
    path += "/api/saved_objects/_import"
    query = "overwrite=true" if overwrite else ""
    netloc = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def _multipart(ndjson: str, boundary: str) -> bytes:
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="moments-kibana.ndjson"\r\n'
        "Content-Type: application/ndjson\r\n\r\n"
    )
    return head.encode() + ndjson.encode("utf-8") + f"\r\n--{boundary}--\r\n".encode()


def import_objects(
    kibana_url: str,
    ndjson: str,
    *,
    space: str | None = None,
    overwrite: bool = False,
    api_key: str | None = None,
    timeout: float = 30.0,
) -> ImportReport:
    """POST saved objects to Kibana's import API (multipart, a ``file`` part ending ``.ndjson``).

    Args:
        kibana_url: Kibana's base URL; ``https://user:password@host:5601`` sends basic auth.
        ndjson: The objects (:func:`export_ndjson`).
        space: A Kibana space id; the default space when ``None``.
        overwrite: Replace objects with the same ids instead of reporting conflicts.
        api_key: A Kibana API key (``Authorization: ApiKey ...``), instead of basic auth.
        timeout: Seconds to wait for Kibana.

    Raises:
        UsageError: a malformed URL or space id.
        WorkFailed: Kibana unreachable, or it refused the request (the status and its message).
    """
    url = import_url(kibana_url, space=space, overwrite=overwrite)
    boundary = f"moments-{uuid.uuid4().hex}"
    headers = {"kbn-xsrf": "true", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    parts = urlsplit(kibana_url.strip())
    if api_key:
        headers["Authorization"] = f"ApiKey {api_key}"
    elif parts.username:
        token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(url, data=_multipart(ndjson, boundary), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise WorkFailed(f"Kibana at {url} refused the import: HTTP {exc.code} {_kibana_message(exc.read())}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WorkFailed(f"cannot reach Kibana at {url}: {reason}") from None
    try:
        answer = json.loads(body)
    except json.JSONDecodeError:
        raise WorkFailed(f"Kibana at {url} answered something that is not JSON: {body[:120]!r}") from None
    if not isinstance(answer, dict) or "success" not in answer:
        raise WorkFailed(f"Kibana at {url} answered without a success field: {str(answer)[:200]}")
    return ImportReport(
        success=bool(answer["success"]),
        success_count=int(answer.get("successCount", 0)),
        errors=list(answer.get("errors", [])),
    )


def _kibana_message(body: bytes) -> str:
    try:
        answer = json.loads(body)
    except json.JSONDecodeError:
        return body[:200].decode("utf-8", "replace").strip()
    if isinstance(answer, dict):
        return str(answer.get("message") or answer.get("error") or answer)
    return str(answer)
