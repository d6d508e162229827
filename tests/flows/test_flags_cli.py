"""``moments flag`` and ``moments flags`` (list, show, update) end to end, on both stores.

Posts are indexed with ``moments index``, flagged with ``moments flag --as-of`` and
worked with ``moments flags``, as a care agent would, through ``moments.cli.main``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.flagging import RULE_VERSION
from moments.cli import main
from moments.records import Flag, FlagEvent, Post, post_flag_id
from search.store import flag_sort_key

MakePost = Callable[..., Post]
POSTED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
AS_OF = "2026-03-02T12:00:00Z"
RULE_ACTOR = f"rule:{RULE_VERSION}"
SUMMARY = re.compile(r"^flags in .+: (\d+) opened, (\d+) escalated, (\d+) reopened, (\d+) updated, (\d+) unchanged; ")

# The seeded posts (see ``posts_file``) and the flags they get under the default rules.
FAST = post_flag_id("test:fast")  # northwind, misery, spreading fast: the most urgent
SLOW = post_flag_id("test:slow")  # northwind, negative, spreading slowly: the least urgent
OTHER = post_flag_id("test:other")  # contoso, misery, in between
FLAGGED = {FAST, SLOW, OTHER}


@pytest.fixture(autouse=True)
def _no_ambient_config(tmp_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ./brands.yaml or $MOMENTS_CONFIG leaks into ``moments flag``; rich tables stay unwrapped."""
    monkeypatch.chdir(tmp_home)
    monkeypatch.delenv("MOMENTS_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "240")


@pytest.fixture(params=["sqlite", pytest.param("elasticsearch", marks=pytest.mark.elasticsearch)])
def store_arg(request: pytest.FixtureRequest, tmp_home: Path) -> str:
    """The ``--store`` value for each backend (ES under a unique index prefix)."""
    if request.param == "sqlite":
        return str(tmp_home / "flags-cli.db")
    # es_url sets a unique $MOMENTS_ES_PREFIX, which the CLI's store picks up.
    return str(request.getfixturevalue("es_url"))


def _classification(
    *, sentiment: str = "negative", moment: str = "misery", negative: float = 0.9, severity: float = 0.8
) -> dict[str, Any]:
    rest = round((1 - negative) / 2, 3)
    return {
        "sentiment": sentiment,
        "sentiment_scores": {"negative": negative, "neutral": rest, "positive": rest},
        "touchpoint": "baggage",
        "touchpoint_scores": {"baggage": 0.8, "other": 0.2},
        "moment": moment,
        "severity": severity,
        "model_version": "test",
    }


def _spreading(make_post: MakePost, native_id: str, *, interactions: int, hours: float, **fields: Any) -> Post:
    """A post crawled ``hours`` after it was posted, with ``interactions`` likes by then."""
    return make_post(
        native_id=native_id,
        created_at=POSTED,
        crawled_at=POSTED + timedelta(hours=hours),
        engagement={"likes": interactions},
        **fields,
    )


@pytest.fixture
def posts_file(tmp_home: Path, make_post: MakePost) -> Path:
    """Three posts the default rules flag (two brands, three priorities) and two they do not.

    The quiet one spreads at 2.5 interactions/hour: below the default ``min_velocity`` (20).
    """
    posts = [
        _spreading(
            make_post,
            "slow",
            interactions=30,
            hours=1,
            text="Still waiting on my refund.",
            author={"handle": "quiet_one", "followers": 0},
            classification=_classification(moment="neutral", negative=0.8, severity=0.3),
        ),
        _spreading(
            make_post,
            "fast",
            interactions=3000,
            hours=1,
            text="They lost my bag and nobody answers.",
            author={"handle": "loud", "followers": 50_000},
            classification=_classification(severity=0.9),
        ),
        _spreading(
            make_post,
            "other",
            interactions=200,
            hours=2,
            brand=["contoso"],
            text="Contoso cancelled my order twice.",
            author={"handle": "shopper", "followers": 100},
            classification=_classification(severity=0.6),
        ),
        _spreading(  # happy, however fast it spreads
            make_post,
            "happy",
            interactions=5000,
            hours=1,
            text="Best crew ever!",
            classification=_classification(sentiment="positive", moment="magic", negative=0.02, severity=0.0),
        ),
        _spreading(  # miserable, but nobody is sharing it
            make_post,
            "quiet",
            interactions=5,
            hours=2,
            text="My seat was broken.",
            classification=_classification(),
        ),
    ]
    path = tmp_home / "classified.jsonl"
    path.write_text("".join(p.to_json() + "\n" for p in posts), encoding="utf-8")
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``moments ARGV``: (exit status, stdout, stderr)."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _summary(out: str) -> tuple[int, ...]:
    """(opened, escalated, reopened, updated, unchanged) from ``moments flag``'s one line."""
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    match = SUMMARY.match(lines[0])
    assert match, lines[0]
    return tuple(int(n) for n in match.groups())


def _seed(capsys: pytest.CaptureFixture[str], store: str, posts_file: Path, *flag_args: str) -> tuple[int, ...]:
    """Index the posts and flag them; returns ``moments flag``'s counts."""
    status, out, err = _run(capsys, "index", str(posts_file), "--store", store)
    assert status == 0, err
    assert out.strip().startswith("indexed 5 posts into ")
    status, out, err = _run(capsys, "flag", "--store", store, "--as-of", AS_OF, *flag_args)
    assert status == 0, err
    assert "opened" in out
    return _summary(out)


def _list(capsys: pytest.CaptureFixture[str], store: str, *args: str) -> list[Flag]:
    status, out, err = _run(capsys, "flags", "list", "--store", store, "--json", *args)
    assert status == 0, err
    return [Flag.model_validate(f) for f in json.loads(out)]


def _show(capsys: pytest.CaptureFixture[str], store: str, flag_id: str) -> dict[str, Any]:
    status, out, err = _run(capsys, "flags", "show", flag_id, "--store", store, "--json")
    assert status == 0, err
    return json.loads(out)


def _events(document: dict[str, Any]) -> list[FlagEvent]:
    return [FlagEvent.model_validate(e) for e in document["events"]]


def _one_line_error(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"moments {command}: error: "), lines[0]
    return lines[0]


# --------------------------------------------------------------------------- flag


def test_flag_opens_one_flag_per_spreading_negative_post(
    store_arg: str, posts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _seed(capsys, store_arg, posts_file) == (3, 0, 0, 0, 0)

    flags = _list(capsys, store_arg, "--status", "all")
    assert {f.id for f in flags} == FLAGGED  # not the happy post, not the quiet one
    for flag in flags:
        assert flag.post_ids == [flag.id.removeprefix("post:")]
        assert (flag.status, flag.version, flag.kind, flag.rule_version) == ("open", 1, "post", RULE_VERSION)
        assert flag.reasons and flag.score > 0 and flag.velocity_per_hour
        assert flag.touchpoint == "baggage"
        assert flag.opened_at.isoformat() == "2026-03-02T12:00:00+00:00"  # --as-of is the run's clock
    by_id = {f.id: f for f in flags}
    assert by_id[OTHER].brand == "contoso" and by_id[FAST].brand == "northwind"
    assert any("moment of misery" in r for r in by_id[FAST].reasons)
    assert any("negative (negative p=0.80" in r for r in by_id[SLOW].reasons)
    assert any("author reach 50k (capped)" in r for r in by_id[FAST].reasons)


def test_flag_rejects_a_naive_as_of(store_arg: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["flag", "--store", store_arg, "--as-of", "2026-03-02T12:00:00"])
    assert exit_info.value.code == 2
    assert "timezone" in capsys.readouterr().err


# --------------------------------------------------------------------------- flags list


def test_flags_and_flags_list_give_the_queue_most_urgent_first(
    store_arg: str, posts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(capsys, store_arg, posts_file)

    status, bare, err = _run(capsys, "flags", "--store", store_arg, "--json")
    assert status == 0, err
    status, listed, err = _run(capsys, "flags", "list", "--store", store_arg, "--json")
    assert status == 0, err
    assert json.loads(bare) == json.loads(listed)

    flags = [Flag.model_validate(f) for f in json.loads(listed)]
    assert [f.id for f in flags] == [FAST, OTHER, SLOW]
    assert flags == sorted(flags, key=flag_sort_key)
    assert [f.priority for f in flags] == ["P1", "P2", "P3"]
    assert json.loads(listed)[0]["id"] == FAST and json.loads(listed)[0]["status"] == "open"

    assert [f.id for f in _list(capsys, store_arg, "--limit", "1")] == [FAST]
    # More than Elasticsearch's default result window (index.max_result_window: 10,000).
    assert [f.id for f in _list(capsys, store_arg, "--limit", "20000")] == [FAST, OTHER, SLOW]
    assert [f.id for f in _list(capsys, store_arg, "--brand", "northwind")] == [FAST, SLOW]
    assert [f.id for f in _list(capsys, store_arg, "--brand", "contoso")] == [OTHER]
    assert _list(capsys, store_arg, "--brand", "nobody") == []
    assert [f.id for f in _list(capsys, store_arg, "--status", "open")] == [FAST, OTHER, SLOW]
    assert _list(capsys, store_arg, "--status", "resolved") == []

    status, out, err = _run(
        capsys, "flags", "update", SLOW, "--status", "resolved", "--actor", "dana", "--store", store_arg
    )
    assert status == 0, err
    assert out.strip() == f"{SLOW}: version 2, status resolved"
    assert [f.id for f in _list(capsys, store_arg)] == [FAST, OTHER]  # resolved is not active
    assert [f.id for f in _list(capsys, store_arg, "--status", "resolved")] == [SLOW]
    assert [f.id for f in _list(capsys, store_arg, "--status", "resolved,open")] == [FAST, OTHER, SLOW]
    assert [f.id for f in _list(capsys, store_arg, "--status", "all")] == [FAST, OTHER, SLOW]
    assert _list(capsys, store_arg, "--status", "all", "--brand", "contoso")[0].status == "open"

    status, table, err = _run(capsys, "flags", "--store", store_arg)
    assert status == 0, err
    assert FAST in table and OTHER in table and SLOW not in table
    assert "They lost my bag" in table


@pytest.mark.parametrize(("argv", "command"), [(["flags"], "flags"), (["flags", "list"], "flags list")])
def test_an_unknown_status_is_a_one_line_usage_error(
    argv: list[str], command: str, store_arg: str, posts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(capsys, store_arg, posts_file)
    status, out, err = _run(capsys, *argv, "--store", store_arg, "--status", "closed")
    assert status == 2
    assert out == ""
    line = _one_line_error(err, command)
    assert "unknown status" in line and "closed" in line


def test_flags_on_an_empty_store_says_so(store_arg: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "flags", "--store", store_arg, "--json")
    assert (status, json.loads(out)) == (0, [])
    status, out, err = _run(capsys, "flags", "--store", store_arg)
    assert (status, err) == (0, "") and "No flags." in out


# --------------------------------------------------------------------------- flags show


def test_show_gives_reasons_posts_and_the_event_log(
    store_arg: str, posts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(capsys, store_arg, posts_file)

    status, out, err = _run(capsys, "flags", "show", FAST, "--store", store_arg)
    assert status == 0, err
    assert FAST in out and "P1" in out and "open" in out and "(version 1)" in out
    assert "moment of misery" in out and "interactions/h" in out  # the reasons
    assert "They lost my bag and nobody answers." in out  # the post
    assert "Events (1)" in out and "opened" in out and RULE_ACTOR in out

    document = _show(capsys, store_arg, FAST)
    assert set(document) == {"flag", "events", "posts"}
    flag = Flag.model_validate(document["flag"])
    assert flag == next(f for f in _list(capsys, store_arg) if f.id == FAST)
    events = _events(document)
    assert [(e.version, e.actor, e.action) for e in events] == [(1, RULE_ACTOR, "opened")]
    assert events[0].at == flag.opened_at
    assert {c.field: c.new for c in events[0].changes}["status"] == "open"
    assert [Post.model_validate(p).id for p in document["posts"]] == ["test:fast"]


def test_show_an_unknown_flag_is_a_one_line_usage_error(
    store_arg: str, posts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(capsys, store_arg, posts_file)
    for extra in ([], ["--json"]):
        status, out, err = _run(capsys, "flags", "show", "post:test:nope", "--store", store_arg, *extra)
        assert status == 2 and out == ""
        assert "post:test:nope" in _one_line_error(err, "flags show")


# --------------------------------------------------------------------------- flags update


def test_update_changes_the_flag_and_logs_who_did_what(
    store_arg: str, posts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(capsys, store_arg, posts_file)

    status, out, err = _run(
        capsys,
        "flags",
        "update",
        FAST,
        "--status",
        "acknowledged",
        "--assignee",
        "dana",
        "--actor",
        "dana",
        "--if-version",
        "1",
        "--store",
        store_arg,
    )
    assert status == 0, err
    assert out.strip() == f"{FAST}: version 2, status acknowledged, assigned to dana"

    document = _show(capsys, store_arg, FAST)
    flag = Flag.model_validate(document["flag"])
    assert (flag.version, flag.status, flag.assignee) == (2, "acknowledged", "dana")
    events = _events(document)
    assert [(e.version, e.actor, e.action) for e in events] == [(1, RULE_ACTOR, "opened"), (2, "dana", "changed")]
    assert {c.field: (c.old, c.new) for c in events[1].changes} == {
        "status": ("open", "acknowledged"),
        "assignee": (None, "dana"),
    }
    assert events[1].note is None

    status, out, err = _run(
        capsys, "flags", "update", FAST, "--note", "DM sent", "--actor", "lee", "--store", store_arg
    )
    assert status == 0, err
    assert out.strip() == f"{FAST}: version 3, status acknowledged, assigned to dana"
    events = _events(_show(capsys, store_arg, FAST))
    assert [(e.version, e.actor, e.action, e.note) for e in events[2:]] == [(3, "lee", "note", "DM sent")]
    assert events[2].changes == []
    assert events[:2] == _events(document)  # the log is append-only

    # One field at a time names the action after it.
    status, out, err = _run(
        capsys, "flags", "update", FAST, "--status", "responded", "--actor", "dana", "--store", store_arg
    )
    assert status == 0, err
    status, out, err = _run(capsys, "flags", "update", FAST, "--assignee", "", "--actor", "dana", "--store", store_arg)
    assert status == 0, err
    assert out.strip() == f"{FAST}: version 5, status responded"
    document = _show(capsys, store_arg, FAST)
    events = _events(document)
    assert [(e.version, e.action) for e in events[3:]] == [(4, "status"), (5, "assigned")]
    assert {c.field: (c.old, c.new) for c in events[4].changes} == {"assignee": ("dana", None)}
    assert document["flag"]["first_response_at"] is not None

    # A change to what the flag already is writes nothing.
    status, out, err = _run(
        capsys, "flags", "update", FAST, "--status", "responded", "--actor", "dana", "--store", store_arg
    )
    assert status == 0, err
    assert out.strip() == f"{FAST}: version 5, status responded"
    assert len(_events(_show(capsys, store_arg, FAST))) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([FAST, "--actor", "dana"], "nothing to change"),
        ([FAST, "--status", "closed", "--actor", "dana"], "unknown status 'closed'"),
        (["post:test:nope", "--status", "resolved", "--actor", "dana"], "post:test:nope"),
    ],
    ids=["nothing-to-change", "unknown-status", "unknown-flag"],
)
def test_update_refuses_bad_usage_with_one_line(
    args: list[str], message: str, store_arg: str, posts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(capsys, store_arg, posts_file)
    before = _show(capsys, store_arg, FAST)

    status, out, err = _run(capsys, "flags", "update", *args, "--store", store_arg)
    assert status == 2 and out == ""
    assert message in _one_line_error(err, "flags update")
    assert _show(capsys, store_arg, FAST) == before


def test_update_needs_an_actor(store_arg: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["flags", "update", FAST, "--status", "acknowledged", "--store", store_arg])
    assert exit_info.value.code == 2
    assert "--actor" in capsys.readouterr().err


def test_a_stale_if_version_is_a_conflict_that_changes_nothing(
    store_arg: str, posts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(capsys, store_arg, posts_file)
    status, out, err = _run(
        capsys,
        "flags",
        "update",
        FAST,
        "--status",
        "acknowledged",
        "--assignee",
        "dana",
        "--actor",
        "dana",
        "--if-version",
        "1",
        "--store",
        store_arg,
    )
    assert status == 0, err
    before = _show(capsys, store_arg, FAST)

    status, out, err = _run(
        capsys,
        "flags",
        "update",
        FAST,
        "--status",
        "dismissed",
        "--actor",
        "lee",
        "--if-version",
        "1",
        "--store",
        store_arg,
    )
    assert status == 2
    assert out == ""
    line = _one_line_error(err, "flags update")
    assert FAST in line and "changed by dana" in line and "version is 2, not 1" in line

    after = _show(capsys, store_arg, FAST)
    assert after == before
    assert after["flag"]["status"] == "acknowledged" and after["flag"]["version"] == 2
    assert len(after["events"]) == 2

    # Read again, retry at the current version: it lands.
    status, out, err = _run(
        capsys,
        "flags",
        "update",
        FAST,
        "--status",
        "dismissed",
        "--actor",
        "lee",
        "--if-version",
        "2",
        "--store",
        store_arg,
    )
    assert status == 0, err
    assert out.strip() == f"{FAST}: version 3, status dismissed, assigned to dana"


# --------------------------------------------------------------------------- re-running the rule


def test_rerunning_the_rule_changes_nothing_and_never_reopens_a_resolved_flag(
    store_arg: str, posts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(capsys, store_arg, posts_file)
    before = {flag_id: _show(capsys, store_arg, flag_id) for flag_id in FLAGGED}

    status, out, err = _run(capsys, "flag", "--store", store_arg, "--as-of", AS_OF)
    assert status == 0, err
    assert _summary(out) == (0, 0, 0, 0, 3)
    assert "3 active (1 P1, 1 P2, 1 P3)" in out
    assert {flag_id: _show(capsys, store_arg, flag_id) for flag_id in FLAGGED} == before

    # An agent resolves the most urgent one; the rule runs again, now and later.
    status, out, err = _run(
        capsys, "flags", "update", FAST, "--status", "resolved", "--actor", "dana", "--store", store_arg
    )
    assert status == 0, err
    resolved = _show(capsys, store_arg, FAST)
    for as_of in (AS_OF, "2026-03-05T09:30:00Z"):
        status, out, err = _run(capsys, "flag", "--store", store_arg, "--as-of", as_of)
        assert status == 0, err
        assert _summary(out) == (0, 0, 0, 0, 3)
        assert "2 active (1 P2, 1 P3)" in out
        assert _show(capsys, store_arg, FAST) == resolved
    assert resolved["flag"]["status"] == "resolved" and resolved["flag"]["resolved_at"] is not None
    assert [e["actor"] for e in resolved["events"]] == [RULE_ACTOR, "dana"]

    # Re-indexing the same posts and flagging again opens no second flag either.
    assert _seed(capsys, store_arg, posts_file) == (0, 0, 0, 0, 3)
    assert len(_list(capsys, store_arg, "--status", "all")) == 3


# --------------------------------------------------------------------------- --config


def _config(tmp_home: Path, text: str) -> Path:
    path = tmp_home / "brands.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_config_thresholds_decide_what_is_flagged(
    store_arg: str, posts_file: Path, tmp_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    strict = _config(tmp_home, "flag_rules:\n  min_velocity: 100000\n")
    assert _seed(capsys, store_arg, posts_file, "--config", str(strict)) == (0, 0, 0, 0, 0)
    assert _list(capsys, store_arg, "--status", "all") == []


def test_a_brand_override_applies_to_that_brand_only(
    store_arg: str, posts_file: Path, tmp_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(
        tmp_home,
        "flag_rules: {min_velocity: 100000}\n"
        "brands:\n"
        "  - name: Northwind\n"  # brand names match case-insensitively
        "    flag_rules: {min_velocity: 1}\n"
        "  - name: contoso\n",
    )
    assert _seed(capsys, store_arg, posts_file, "--config", str(config)) == (3, 0, 0, 0, 0)
    flags = _list(capsys, store_arg, "--status", "all")
    # Every northwind post that is negative with any velocity, including the quiet one; no contoso post.
    assert {f.id for f in flags} == {FAST, SLOW, post_flag_id("test:quiet")}
    assert {f.brand for f in flags} == {"northwind"}


def test_the_default_config_is_brands_yaml_in_the_working_directory(
    store_arg: str, posts_file: Path, tmp_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _config(tmp_home, "flag_rules:\n  min_velocity: 100000\n")  # ./brands.yaml (the cwd is tmp_home)
    assert _seed(capsys, store_arg, posts_file) == (0, 0, 0, 0, 0)


def test_a_config_error_names_the_file_and_line(
    store_arg: str, posts_file: Path, tmp_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = _run(capsys, "index", str(posts_file), "--store", store_arg)
    assert status == 0, err
    config = _config(tmp_home, "# thresholds\nflag_rules:\n  min_velocity: 10\n  min_velocty: 5\n")

    status, out, err = _run(capsys, "flag", "--store", store_arg, "--as-of", AS_OF, "--config", str(config))
    assert status == 2 and out == ""
    line = _one_line_error(err, "flag")
    assert f"{config}:4: flag_rules.min_velocty: unknown key" in line

    status, out, err = _run(capsys, "flag", "--store", store_arg, "--config", str(tmp_home / "missing.yaml"))
    assert status == 2
    assert "missing.yaml" in _one_line_error(err, "flag")
    assert _list(capsys, store_arg, "--status", "all") == []  # nothing was flagged
