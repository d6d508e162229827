"""A real 2-node Elasticsearch cluster on loopback: one node stops and restarts, nothing is lost.

The cluster is started here (``search.devserver.start_cluster``), not the shared
``make test`` server, and stopped at the end whatever happens. Node 1 bootstraps it
and is the elected master; with two master-eligible nodes only the *other* node can
stop without the cluster losing its quorum, so the test stops the node that
``_cat/master`` says is not the master, while the store talks to the master.
"""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from moments.records import Post
from search import devserver
from search.elastic import ElasticStore

pytestmark = [pytest.mark.slow, pytest.mark.elasticsearch]

MakePost = Callable[..., Post]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def cluster() -> Iterator[devserver.Cluster]:
    """Two nodes, one shared cluster name, stopped (and their data deleted) after the module."""
    try:
        started = devserver.start_cluster(2)
    except devserver.MissingTool as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and no cluster can be started: {exc}", pytrace=False)
        pytest.skip(str(exc))
    try:
        yield started
    finally:
        devserver.stop_cluster(started)


def test_writes_and_searches_survive_a_node_outage_and_the_replicas_recover(
    cluster: devserver.Cluster, make_post: MakePost
) -> None:
    master = cluster.master()
    other = cluster.non_master()
    prefix = f"cluster-{uuid.uuid4().hex[:8]}"
    store = ElasticStore(cluster.urls[master], index_prefix=prefix, refresh=True, replicas=1, backoff=0.2)
    try:
        before = [make_post(text=f"refund still missing for order {n}") for n in range(40)]
        assert store.upsert(before).written == 40
        assert store.count_posts("refund") == 40
        assert cluster.health(master, wait_for_status="green", timeout="120s")["status"] == "green"

        devserver.stop_node(cluster, other)
        down = cluster.health(master, wait_for_nodes="1", timeout="60s")
        assert down["number_of_nodes"] == 1
        # Every primary is on the remaining node (its replicas promoted), the replicas have nowhere to go.
        assert down["status"] == "yellow"
        assert down["unassigned_shards"] > 0

        during = [make_post(text=f"outage week refund for order {n}") for n in range(60)]
        result = store.upsert(during)
        assert (result.written, result.spooled) == (60, 0)
        assert store.count_posts("refund") == 100
        assert store.count_posts("outage") == 60
        assert {post.id for post in store.search('"outage week"', limit=100)} == {post.id for post in during}

        restarted = devserver.restart_node(cluster, other)
        healed = cluster.health(master, wait_for_status="green", wait_for_nodes="2", timeout="180s")
        assert (healed["status"], healed["number_of_nodes"], healed["unassigned_shards"]) == ("green", 2, 0)

        shards = _get(f"{restarted.url}/_cat/shards/{store.index}?format=json")
        assert {shard["state"] for shard in shards} == {"STARTED"}
        assert sorted(shard["prirep"] for shard in shards) == ["p", "r"]
        assert {shard["node"] for shard in shards} == set(cluster.node_names())
        # Each node answers from its own copy only: the restarted node's copy holds the outage's writes.
        for url in cluster.urls:
            local = _get(f"{url}/{store.alias}/_count?preference=_only_local&q=text:outage")
            assert local["count"] == 60
        assert store.count() == 100
    finally:
        store.close()
