"""Kibana saved objects: structure (as elastic/package-spec checks it), the real Elasticsearch, the import API.

Kibana cannot run here, so the NDJSON is checked the way Elastic's package checks do: every
JSON string decodes, every reference and ``panelRefName`` resolves, no id collides. Against the
real Elasticsearch, every field a chart or search uses is in the live mapping (aggregatable
where charted), and each saved search returns exactly the seeded documents it should. The
import command talks to a local HTTP server standing in for Kibana's ``_import`` API.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from elasticsearch import Elasticsearch

from moments.cli import main
from moments.records import Classification, Flag, Post
from search.elastic import ElasticStore
from search.kibana import (
    CORE_MIGRATION_VERSION,
    JSON_STRING_FIELDS,
    TYPE_MIGRATION_VERSIONS,
    check_assets,
    export_ndjson,
    field_uses,
    kql_to_query,
    saved_objects,
    validate_objects,
)
from search.mapping import index_names

MakePost = Callable[..., Post]

EXPECTED = {
    ("index-pattern", "moments-posts"): "moments-posts",
    ("index-pattern", "moments-flags"): "moments-flags",
    ("search", "moments-misery-24h"): "Misery, last 24 h",
    ("search", "moments-open-flags-by-priority"): "Open flags by priority",
    ("lens", "moments-volume-by-touchpoint-moment"): "Volume by touchpoint × moment",
    ("lens", "moments-sentiment-over-time"): "Sentiment over time",
    ("lens", "moments-misery-share-by-touchpoint"): "Share of misery per touchpoint",
    ("lens", "moments-top-viral-negatives"): "Top viral negatives",
    ("dashboard", "moments-of-truth"): "Moments of truth",
}


def _by_id(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["id"]: obj for obj in objects}


def _lens_layers(obj: dict[str, Any]) -> dict[str, Any]:
    layers: dict[str, Any] = obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
    return layers


# --------------------------------------------------------------------------- structure


def test_export_holds_every_asset_of_the_issue_with_stable_ids() -> None:
    objects = saved_objects("moments")

    found = {(o["type"], o["id"]): o["attributes"]["title"] for o in objects}
    assert found == EXPECTED
    views = _by_id(objects)
    assert views["moments-posts"]["attributes"]["timeFieldName"] == "created_at"
    assert views["moments-flags"]["attributes"]["timeFieldName"] == "opened_at"
    for obj in objects:
        assert obj["coreMigrationVersion"] == CORE_MIGRATION_VERSION
        assert obj["typeMigrationVersion"] == TYPE_MIGRATION_VERSIONS[obj["type"]]
    # Built from code, deterministically: two exports are byte-identical (stable Lens layer ids too).
    assert export_ndjson(prefix="moments") == export_ndjson(saved_objects("moments"))


def test_a_prefix_renames_ids_titles_and_the_data_views_aliases() -> None:
    objects = saved_objects("acme")

    assert all(obj["id"].startswith("acme-") for obj in objects)
    views = {o["id"]: o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}
    assert views == {"acme-posts": index_names("acme", "posts")[1], "acme-flags": index_names("acme", "flags")[1]}
    dashboard = next(o for o in objects if o["type"] == "dashboard")
    assert dashboard["attributes"]["title"] == "Moments of truth [acme]"
    assert {ref["id"] for o in objects for ref in o["references"]} <= {o["id"] for o in objects}


def test_every_json_string_field_decodes() -> None:
    decoded: dict[tuple[str, str], Any] = {}
    for obj in saved_objects("moments"):
        for dotted in JSON_STRING_FIELDS:
            value: Any = obj["attributes"]
            for part in dotted.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None:
                assert isinstance(value, str), (obj["id"], dotted)
                decoded[(obj["id"], dotted)] = json.loads(value)
    meta = "kibanaSavedObjectMeta.searchSourceJSON"
    assert isinstance(decoded[("moments-of-truth", "panelsJSON")], list)
    assert decoded[("moments-of-truth", "optionsJSON")]["useMargins"] is True
    assert decoded[("moments-misery-24h", meta)]["query"]["language"] == "kuery"
    assert decoded[("moments-posts", "fieldFormatMap")] == {"url": {"id": "url"}}
    assert decoded[("moments-flags", "sourceFilters")] == [{"value": "events"}]


def test_every_reference_and_panel_ref_name_resolves_and_no_id_collides() -> None:
    objects = saved_objects("moments")
    keys = [(o["type"], o["id"]) for o in objects]
    assert len(keys) == len(set(keys)) and len({o["id"] for o in objects}) == len(objects)

    for obj in objects:
        names = {ref["name"]: (ref["type"], ref["id"]) for ref in obj["references"]}
        assert set(names.values()) <= set(keys), obj["id"]
        if obj["type"] == "search":
            source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
            assert names[source["indexRefName"]][0] == "index-pattern"
        if obj["type"] == "lens":
            for layer_id in _lens_layers(obj):
                assert names[f"indexpattern-datasource-layer-{layer_id}"] == ("index-pattern", "moments-posts")
    dashboard = _by_id(objects)["moments-of-truth"]
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    refs = {ref["name"]: (ref["type"], ref["id"]) for ref in dashboard["references"]}
    assert [p["panelRefName"] for p in panels] == [f"panel_{n}" for n in range(6)]
    held = {refs[p["panelRefName"]] for p in panels}
    assert held == {key for key in keys if key[0] in ("lens", "search")}
    assert all(refs[p["panelRefName"]][0] == p["type"] for p in panels)
    assert validate_objects(objects) == []


def _break_panels_json(objects: list[dict[str, Any]]) -> None:
    _by_id(objects)["moments-of-truth"]["attributes"]["panelsJSON"] = '[{"panelRefName": "panel_0"'


def _dangle_a_search(objects: list[dict[str, Any]]) -> None:
    _by_id(objects)["moments-misery-24h"]["references"][0]["id"] = "moments-gone"


def _collide_ids(objects: list[dict[str, Any]]) -> None:
    _by_id(objects)["moments-sentiment-over-time"]["id"] = "moments-top-viral-negatives"


def _drop_migration_version(objects: list[dict[str, Any]]) -> None:
    del _by_id(objects)["moments-sentiment-over-time"]["typeMigrationVersion"]


def _orphan_a_panel(objects: list[dict[str, Any]]) -> None:
    _by_id(objects)["moments-of-truth"]["references"].pop()


def _drop_layer_reference(objects: list[dict[str, Any]]) -> None:
    _by_id(objects)["moments-sentiment-over-time"]["references"].clear()


def _unknown_column(objects: list[dict[str, Any]]) -> None:
    state = _by_id(objects)["moments-top-viral-negatives"]["attributes"]["state"]
    state["visualization"]["columns"].append({"columnId": "no-such-column"})


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (_break_panels_json, "dashboard/moments-of-truth: panelsJSON is not valid JSON"),
        (_dangle_a_search, "search/moments-misery-24h: dangling reference"),
        (_collide_ids, "lens/moments-top-viral-negatives: id collides"),
        (_drop_migration_version, "lens/moments-sentiment-over-time: typeMigrationVersion missing"),
        (_orphan_a_panel, "dashboard/moments-of-truth: panelRefName panel_5 has no reference"),
        (_drop_layer_reference, "lens/moments-sentiment-over-time: layer"),
        (_unknown_column, "visualization uses unknown column no-such-column"),
    ],
)
def test_the_structural_checks_catch_each_kind_of_breakage(
    breakage: Callable[[list[dict[str, Any]]], None], expected: str
) -> None:
    objects = copy.deepcopy(saved_objects("moments"))
    breakage(objects)
    problems = validate_objects(objects)
    assert any(expected in problem for problem in problems), problems


def test_kql_of_the_saved_searches_translates_and_anything_else_is_refused() -> None:
    assert kql_to_query('status : "open"') == {"match_phrase": {"status": "open"}}
    assert kql_to_query('classification.moment : "misery" and created_at >= "now-24h"') == {
        "bool": {
            "filter": [
                {"match_phrase": {"classification.moment": "misery"}},
                {"range": {"created_at": {"gte": "now-24h"}}},
            ]
        }
    }
    assert kql_to_query('text : "lost and found"') == {"match_phrase": {"text": "lost and found"}}
    assert kql_to_query("") == {"match_all": {}}
    for unsupported in ('status : "open" or status : "acknowledged"', 'not status : "open"', "refund", "url : http*"):
        with pytest.raises(ValueError, match=r"outside the supported subset|wildcards"):
            kql_to_query(unsupported)


# --------------------------------------------------------------------------- the real Elasticsearch

NOW = datetime.now(UTC).replace(microsecond=0)


def _classification(touchpoint: str, moment: str) -> Classification:
    sentiment = {"misery": "negative", "magic": "positive", "neutral": "neutral"}[moment]
    return Classification.model_validate(
        {
            "sentiment": sentiment,
            "sentiment_scores": {sentiment: 0.8, "neutral": 0.2},
            "touchpoint": touchpoint,
            "touchpoint_scores": {touchpoint: 0.9},
            "moment": moment,
            "severity": 0.7 if moment == "misery" else 0.1,
            "model_version": "test-1",
        }
    )


def _flag(post_id: str, priority: str, score: float, status: str = "open") -> Flag:
    return Flag.model_validate(
        {
            "id": f"post:{post_id}",
            "brand": "northwind",
            "touchpoint": "fulfilment",
            "post_ids": [post_id],
            "priority": priority,
            "score": score,
            "reasons": ["moment of misery"],
            "status": status,
            "opened_at": NOW - timedelta(hours=1),
            "updated_at": NOW - timedelta(hours=1),
        }
    )


@dataclass
class Seeded:
    es: Elasticsearch
    prefix: str
    posts_alias: str
    flags_alias: str
    posts: dict[str, Post]


@pytest.fixture
def seeded(es_url: str, es_prefix: str, make_post: MakePost) -> Iterator[Seeded]:
    """Posts and flags in the real Elasticsearch, some inside each saved search and some just outside."""

    def post(name: str, hours_ago: float | None, touchpoint: str, moment: str, shares: int) -> Post:
        created = NOW - timedelta(hours=hours_ago) if hours_ago is not None else None
        return make_post(
            native_id=name,
            url=f"https://example.test/{name}",
            text=f"{name} post",
            created_at=created,
            crawled_at=NOW,
            classification=_classification(touchpoint, moment),
            engagement={"shares": shares, "likes": shares * 3, "replies": 1},
        )

    posts = {
        p.native_id: p
        for p in (
            post("misery-1h", 1, "fulfilment", "misery", 40),
            post("misery-23h", 23, "boarding", "misery", 90),
            post("misery-30h", 30, "boarding", "misery", 500),  # too old for the last 24 h
            post("magic-2h", 2, "fulfilment", "magic", 700),  # recent but not misery
            post("neutral-3h", 3, "checkout", "neutral", 5),
            post("misery-undated", None, "fulfilment", "misery", 1),  # no created_at: never "last 24 h"
        )
    }
    with ElasticStore(es_url, index_prefix=es_prefix, refresh=True) as store:
        store.upsert(posts.values())
        store.create_flag(_flag(posts["misery-1h"].id, "P3", 2.0), actor="rule:test", at=NOW)
        store.create_flag(_flag(posts["misery-23h"].id, "P1", 9.0), actor="rule:test", at=NOW)
        store.create_flag(_flag(posts["misery-30h"].id, "P1", 8.0, "acknowledged"), actor="rule:test", at=NOW)
        store.create_flag(_flag(posts["magic-2h"].id, "P2", 5.0), actor="rule:test", at=NOW)
        es = Elasticsearch(es_url)
        try:
            yield Seeded(es, es_prefix, store.alias, store.flags_alias, posts)
        finally:
            es.close()


def _run_saved_search(seeded: Seeded, obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The hits Discover shows for a saved search: its KQL as Query DSL, its sort, on its data view's title."""
    source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    view_id = next(ref["id"] for ref in obj["references"] if ref["name"] == source["indexRefName"])
    views = {o["id"]: o for o in saved_objects(seeded.prefix)}
    title = views[view_id]["attributes"]["title"]
    sort = [{name: direction} for name, direction in obj["attributes"]["sort"]]
    response = seeded.es.search(index=title, query=kql_to_query(source["query"]["query"]), sort=sort, size=100)
    return list(response["hits"]["hits"])


@pytest.mark.elasticsearch
def test_every_used_field_is_in_the_live_mapping_and_charted_ones_are_aggregatable(seeded: Seeded) -> None:
    objects = saved_objects(seeded.prefix)

    assert check_assets(objects, seeded.es, seeded.posts_alias, seeded.flags_alias) == []

    # The same, spelled out for the charted fields: field_caps on the live aliases.
    views = {o["id"]: o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}
    charted = {(use.data_view_id, use.field) for use in field_uses(objects) if use.aggregatable}
    assert {
        (f"{seeded.prefix}-posts", "created_at"),
        (f"{seeded.prefix}-posts", "classification.touchpoint"),
        (f"{seeded.prefix}-posts", "classification.moment"),
        (f"{seeded.prefix}-posts", "classification.sentiment"),
        (f"{seeded.prefix}-posts", "engagement.shares"),
        (f"{seeded.prefix}-flags", "opened_at"),
        (f"{seeded.prefix}-flags", "priority"),
    } <= charted
    for view_id, name in charted:
        caps = seeded.es.field_caps(index=views[view_id], fields=name)["fields"][name]
        assert all(cap["aggregatable"] for cap in caps.values()), (name, caps)
        assert set(caps) <= {"keyword", "date", "long", "double", "float"}, (name, caps)


@pytest.mark.elasticsearch
def test_the_live_checks_report_unmapped_and_unaggregatable_fields(seeded: Seeded) -> None:
    objects = copy.deepcopy(saved_objects(seeded.prefix))
    viral = _by_id(objects)[f"{seeded.prefix}-top-viral-negatives"]
    columns = next(iter(_lens_layers(viral).values()))["columns"]
    by_field = {c["sourceField"]: c for c in columns.values()}
    by_field["url"]["sourceField"] = "text"  # analysed text: not aggregatable
    by_field["engagement.likes"]["sourceField"] = "engagement.hearts"  # not in the mapping

    problems = check_assets(objects, seeded.es, seeded.posts_alias, "some-other-flags")

    label = f"lens/{seeded.prefix}-top-viral-negatives"
    assert f"{label}: field text is charted but is text, not aggregatable" in problems
    assert f"{label}: field engagement.hearts is not in the mapping of {seeded.posts_alias}" in problems
    assert any("no data view points at the flags alias some-other-flags" in p for p in problems)
    assert len(problems) == 3, problems


@pytest.mark.elasticsearch
def test_misery_last_24h_returns_exactly_the_recent_misery_posts(seeded: Seeded) -> None:
    search = _by_id(saved_objects(seeded.prefix))[f"{seeded.prefix}-misery-24h"]

    hits = _run_saved_search(seeded, search)

    newest_first = [seeded.posts["misery-1h"].id, seeded.posts["misery-23h"].id]
    assert [hit["_id"] for hit in hits] == newest_first


@pytest.mark.elasticsearch
def test_open_flags_by_priority_returns_the_open_flags_p1_first(seeded: Seeded) -> None:
    search = _by_id(saved_objects(seeded.prefix))[f"{seeded.prefix}-open-flags-by-priority"]

    hits = _run_saved_search(seeded, search)

    posts = seeded.posts
    expected = [f"post:{posts['misery-23h'].id}", f"post:{posts['magic-2h'].id}", f"post:{posts['misery-1h'].id}"]
    assert [hit["_id"] for hit in hits] == expected  # P1, P2, P3; the acknowledged P1 is left out
    assert [hit["_source"]["priority"] for hit in hits] == ["P1", "P2", "P3"]


@pytest.mark.elasticsearch
def test_top_viral_negatives_table_ranks_negative_posts_by_shares(seeded: Seeded) -> None:
    """The table's layer as the aggregation Lens sends: its query, terms on url ordered by max shares."""
    lens = _by_id(saved_objects(seeded.prefix))[f"{seeded.prefix}-top-viral-negatives"]
    state = lens["attributes"]["state"]
    layer = next(iter(_lens_layers(lens).values()))
    columns = layer["columns"]
    rows = next(c for c in columns.values() if c["operationType"] == "terms")
    order_id = rows["params"]["orderBy"]["columnId"]
    metrics = {cid: c for cid, c in columns.items() if c["operationType"] == "max"}
    aggs = {
        "rows": {
            "terms": {"field": rows["sourceField"], "size": rows["params"]["size"], "order": {order_id: "desc"}},
            "aggs": {cid: {"max": {"field": c["sourceField"]}} for cid, c in metrics.items()},
        }
    }

    response = seeded.es.search(
        index=seeded.posts_alias, query=kql_to_query(state["query"]["query"]), aggs=aggs, size=0
    )

    buckets = response["aggregations"]["rows"]["buckets"]
    assert [(b["key"], b[order_id]["value"]) for b in buckets] == [
        ("https://example.test/misery-30h", 500.0),
        ("https://example.test/misery-23h", 90.0),
        ("https://example.test/misery-1h", 40.0),
        ("https://example.test/misery-undated", 1.0),
    ]  # the most shared post of all (magic) is not negative, so not here


@pytest.mark.elasticsearch
def test_share_of_misery_chart_splits_each_touchpoint_by_moment(seeded: Seeded) -> None:
    """The 100 % stacked bar's layer as Lens queries it: terms on touchpoint, then terms on moment."""
    lens = _by_id(saved_objects(seeded.prefix))[f"{seeded.prefix}-misery-share-by-touchpoint"]
    visualization = lens["attributes"]["state"]["visualization"]
    assert visualization["preferredSeriesType"] == "bar_horizontal_percentage_stacked"
    columns = next(iter(_lens_layers(lens).values()))["columns"]
    x_axis = columns[visualization["layers"][0]["xAccessor"]]
    split = columns[visualization["layers"][0]["splitAccessor"]]
    aggs = {
        "x": {
            "terms": {"field": x_axis["sourceField"], "size": x_axis["params"]["size"]},
            "aggs": {"split": {"terms": {"field": split["sourceField"], "size": split["params"]["size"]}}},
        }
    }

    response = seeded.es.search(index=seeded.posts_alias, aggs=aggs, size=0)

    shares = {
        bucket["key"]: {inner["key"]: inner["doc_count"] / bucket["doc_count"] for inner in bucket["split"]["buckets"]}
        for bucket in response["aggregations"]["x"]["buckets"]
    }
    assert shares == {
        "fulfilment": {"misery": 2 / 3, "magic": 1 / 3},
        "boarding": {"misery": 1.0},
        "checkout": {"neutral": 1.0},
    }


# --------------------------------------------------------------------------- import against a local "Kibana"


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeKibana:
    """A local HTTP server answering ``POST .../api/saved_objects/_import`` as Kibana does."""

    url: str
    requests: list[Received] = field(default_factory=list)
    status: int = 200
    answer: dict[str, Any] = field(default_factory=lambda: {"success": True, "successCount": 9, "errors": []})


@pytest.fixture
def kibana() -> Iterator[FakeKibana]:
    fake = FakeKibana(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake.requests.append(Received("POST", parts.path, parts.query, headers, self.rfile.read(length)))
            # Kibana refuses a write without kbn-xsrf and anything but its import path.
            if headers.get("kbn-xsrf") is None:
                status, answer = (
                    400,
                    {"statusCode": 400, "error": "Bad Request", "message": "Request must contain a kbn-xsrf header."},
                )
            elif not parts.path.endswith("/api/saved_objects/_import"):
                status, answer = 404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"}
            else:
                status, answer = fake.status, fake.answer
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def _file_part(received: Received) -> tuple[str | None, str | None, list[dict[str, Any]]]:
    """The multipart body's parts, parsed by the stdlib's MIME parser: (field name, filename, objects)."""
    head = f"Content-Type: {received.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + received.body)
    assert message.is_multipart()
    parts = list(message.iter_parts())
    assert len(parts) == 1
    part = parts[0]
    name = part.get_param("name", header="content-disposition")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    objects = [json.loads(line) for line in payload.decode().splitlines() if line.strip()]
    return (str(name) if name else None), part.get_filename(), objects


def test_import_posts_the_ndjson_as_a_multipart_file_with_kbn_xsrf(
    kibana: FakeKibana, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOMENTS_ES_PREFIX", "moments")

    code = main(["kibana", "import", "--kibana-url", kibana.url])

    assert code == 0
    [received] = kibana.requests
    assert (received.method, received.path, received.query) == ("POST", "/api/saved_objects/_import", "")
    assert received.headers["kbn-xsrf"] == "true"
    assert received.headers["content-type"].startswith("multipart/form-data; boundary=")
    name, filename, objects = _file_part(received)
    assert name == "file" and filename is not None and filename.endswith(".ndjson")
    assert objects == saved_objects("moments")
    out = capsys.readouterr().out
    assert "successCount: 9 of 9 saved objects imported into the default space" in out
    assert "errors" not in out


def test_import_into_a_space_with_overwrite_and_basic_auth(
    kibana: FakeKibana, capsys: pytest.CaptureFixture[str]
) -> None:
    authed = kibana.url.replace("http://", "http://analyst:s3cret@")

    code = main(["kibana", "import", "--kibana-url", authed + "/", "--space", "brand-team", "--overwrite"])

    assert code == 0
    [received] = kibana.requests
    assert (received.path, received.query) == ("/s/brand-team/api/saved_objects/_import", "overwrite=true")
    assert received.headers["authorization"] == "Basic YW5hbHlzdDpzM2NyZXQ="  # analyst:s3cret
    assert "imported into space brand-team" in capsys.readouterr().out


def test_import_of_a_file_sends_that_file(kibana: FakeKibana, tmp_path: Path) -> None:
    exported = tmp_path / "acme.ndjson"
    exported.write_text(export_ndjson(prefix="acme"), encoding="utf-8")

    assert main(["kibana", "import", "--kibana-url", kibana.url, "--file", str(exported)]) == 0

    _, _, objects = _file_part(kibana.requests[0])
    assert [o["id"] for o in objects] == [o["id"] for o in saved_objects("acme")]


def test_import_errors_are_printed_one_by_one_and_exit_1(
    kibana: FakeKibana, capsys: pytest.CaptureFixture[str]
) -> None:
    kibana.answer = {
        "success": False,
        "successCount": 7,
        "errors": [
            {
                "id": "moments-of-truth",
                "type": "dashboard",
                "title": "Moments of truth",
                "meta": {"title": "Moments of truth", "icon": "dashboardApp"},
                "error": {"type": "conflict"},
            },
            {
                "id": "moments-misery-24h",
                "type": "search",
                "meta": {"title": "Misery, last 24 h"},
                "error": {
                    "type": "missing_references",
                    "references": [{"type": "index-pattern", "id": "moments-posts"}],
                },
            },
        ],
    }

    code = main(["kibana", "import", "--kibana-url", kibana.url])

    assert code == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "successCount: 7 of 9 saved objects imported into the default space",
        "errors: 2",
        "  dashboard/moments-of-truth (Moments of truth): conflict",
        "  search/moments-misery-24h (Misery, last 24 h): missing_references: index-pattern/moments-posts",
    ]


def test_a_refused_request_is_one_line_and_exit_1(kibana: FakeKibana, capsys: pytest.CaptureFixture[str]) -> None:
    kibana.status = 401
    kibana.answer = {"statusCode": 401, "error": "Unauthorized", "message": "missing authentication credentials"}

    code = main(["kibana", "import", "--kibana-url", kibana.url])

    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"moments kibana import: error: Kibana at {kibana.url}/api/saved_objects/_import refused the import: "
        "HTTP 401 missing authentication credentials"
    )


def test_an_unreachable_kibana_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    code = main(["kibana", "import", "--kibana-url", f"http://127.0.0.1:{port}", "--timeout", "5"])

    assert code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"moments kibana import: error: cannot reach Kibana at http://127.0.0.1:{port}/api/")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--kibana-url", "kibana:5601"], "--kibana-url must be an http(s) URL"),
        (["--kibana-url", "http://127.0.0.1:9", "--space", "Brand Team"], "--space must be a Kibana space id"),
    ],
)
def test_bad_input_is_exit_2_before_any_request(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kibana", "import", *arguments]) == 2
    assert message in capsys.readouterr().err


def test_a_file_that_is_not_ndjson_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.ndjson"
    broken.write_text('{"id": "x", "type": "lens"}\nnot json\n', encoding="utf-8")

    assert main(["kibana", "import", "--kibana-url", "http://127.0.0.1:9", "--file", str(broken)]) == 2
    assert "line 2 is not JSON" in capsys.readouterr().err


# --------------------------------------------------------------------------- export


def test_export_writes_the_objects_to_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOMENTS_ES_PREFIX", "moments")
    target = tmp_path / "moments-kibana.ndjson"

    assert main(["kibana", "export", "-o", str(target)]) == 0

    objects = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert {(o["type"], o["id"]): o["attributes"]["title"] for o in objects} == EXPECTED
    assert validate_objects(objects) == []
    assert f"wrote 9 saved objects to {target}" in capsys.readouterr().err


def test_export_defaults_to_stdout_and_follows_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kibana", "export", "--prefix", "acme"]) == 0

    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert objects == saved_objects("acme")
