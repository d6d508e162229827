"""``moments index`` and ``moments search`` end to end, on both stores."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from moments.cli import main
from moments.records import Post
from search import open_store

MakePost = Callable[..., Post]


@pytest.fixture(params=["sqlite", pytest.param("elasticsearch", marks=pytest.mark.elasticsearch)])
def store_arg(request: pytest.FixtureRequest, tmp_home: Path) -> str:
    """The ``--store`` value for each backend (ES under a unique index prefix)."""
    if request.param == "sqlite":
        return str(tmp_home / "cli.db")
    # es_url sets a unique $MOMENTS_ES_PREFIX, which the CLI's store picks up.
    return str(request.getfixturevalue("es_url"))


@pytest.fixture
def posts_file(tmp_home: Path, make_post: MakePost) -> Path:
    """Four good posts with a malformed line 3 and an invalid post on line 6."""
    good = [
        make_post(native_id="1", text="Two hour delay and no announcement."),
        make_post(native_id="2", text="They lost my bag again."),
        make_post(native_id="3", text="Refund arrived late but it arrived."),
        make_post(native_id="4", text="Lovely crew on the way home.", brand=["contoso"]),
    ]
    lines = [good[0].to_json(), good[1].to_json(), "{not json", good[2].to_json(), "", '{"id": "x"}', good[3].to_json()]
    path = tmp_home / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_index_twice_same_count_and_reports_bad_lines(
    store_arg: str, posts_file: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="moments.records")
    for new, updated in ((4, 0), (0, 4)):
        assert main(["index", str(posts_file), "--store", store_arg]) == 0
        out = capsys.readouterr().out.strip()
        assert out == (
            f"indexed 4 posts into {store_arg}: {new} new, {updated} updated, 0 rejected, 0 retried "
            "(0 spooled, 2 lines dropped)"
        )

    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert any("line 3 dropped: not valid JSON" in m for m in dropped)
    assert any("line 6 dropped" in m for m in dropped)
    with open_store(store_arg) as store:
        assert store.count() == 4
        assert store.get("test:4") is not None


def test_search_table_and_json(
    store_arg: str, posts_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps the table to the terminal width
    assert main(["index", str(posts_file), "--store", store_arg]) == 0
    capsys.readouterr()

    assert main(["search", "delay", "--store", store_arg, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [Post.model_validate(p).id for p in found] == ["test:1"]

    assert main(["search", "crew", "--store", store_arg, "--json", "--brand", "northwind"]) == 0
    assert json.loads(capsys.readouterr().out) == []

    assert main(["search", "lost bag", "--store", store_arg]) == 0
    table = capsys.readouterr().out
    assert "1 post matching 'lost bag'" in table and "They lost my bag again." in table

    assert main(["search", "pizza", "--store", store_arg]) == 0
    assert "no posts match 'pizza'" in capsys.readouterr().out


def test_default_store_is_under_moments_home(
    tmp_home: Path, posts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["index", str(posts_file)]) == 0
    assert (
        capsys.readouterr().out.strip()
        == f"indexed 4 posts into {tmp_home / 'moments.db'}: 4 new, 0 updated, 0 rejected, 0 retried "
        "(0 spooled, 2 lines dropped)"
    )
    assert (tmp_home / "moments.db").is_file()


@pytest.mark.parametrize("command", ["index", "search"])
def test_help_teaches_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"moments {command} " in text and "--store" in text


def test_missing_input_is_a_one_line_error(tmp_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(tmp_home / "nope.jsonl")]) == 2  # bad input
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("moments index: error:") and "nope.jsonl" in err[0]


def test_index_of_records_that_are_not_posts_says_how_to_make_posts(
    tmp_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_home / "export.jsonl"
    export.write_text(
        '{"id": "1", "text": "my flight was late"}\n{"id": "2", "text": "great crew"}\n', encoding="utf-8"
    )
    assert main(["index", str(export)]) == 2  # nothing in it was a post
    captured = capsys.readouterr()
    assert "indexed 0 posts" in captured.out and "2 lines dropped" in captured.out
    assert f"moments crawl import --query {export} --config brands.yaml" in captured.err


# ------------------------------------------------------------------------------ periods, order, --all, --agg


@pytest.fixture
def dated_store(store_arg: str, make_post: MakePost) -> str:
    """Posts an hour, three days and three weeks old (relative to now), one undated, with engagement."""
    from datetime import timedelta

    from moments.records import utc_now

    now = utc_now()
    posts = [
        make_post(native_id="hour", text="refund late", created_at=now - timedelta(hours=1), engagement={"likes": 1}),
        make_post(native_id="days", text="refund slow", created_at=now - timedelta(days=3), engagement={"likes": 9}),
        make_post(native_id="weeks", text="refund gone", created_at=now - timedelta(weeks=3), engagement={"likes": 5}),
        make_post(native_id="undated", text="refund maybe", created_at=None),
    ]
    with open_store(store_arg) as store:
        store.upsert(posts)
    return store_arg


def _ids(out: str) -> list[str]:
    return [Post.model_validate(p).native_id for p in json.loads(out)]


def test_since_until_and_sort(dated_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "refund", "--store", dated_store, "--json", "--since", "7d", "--sort", "recent"]) == 0
    assert _ids(capsys.readouterr().out) == ["hour", "days"]
    assert main(["search", "refund", "--store", dated_store, "--json", "--since", "30m"]) == 0
    assert _ids(capsys.readouterr().out) == []
    assert main(["search", "refund", "--store", dated_store, "--json", "--since", "2w", "--until", "24h"]) == 0
    assert _ids(capsys.readouterr().out) == ["days"]
    assert main(["search", "refund", "--store", dated_store, "--json", "--sort", "engagement"]) == 0
    assert _ids(capsys.readouterr().out) == ["days", "weeks", "hour", "undated"]
    # With a period the query may be left out: every post of it.
    assert main(["search", "--store", dated_store, "--json", "--since", "24h"]) == 0
    assert _ids(capsys.readouterr().out) == ["hour"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["refund", "--since", "7x"], "--since '7x' is not a time"),
        (["refund", "--until", "yesterday"], "--until 'yesterday' is not a time"),
        (["refund", "--since", "1d", "--until", "2d"], "must be before --until"),
        (["refund", "--all", "--limit", "3"], "--all and --limit do not go together"),
        (["--agg", "loudest"], "timeline, moment_share, top_authors, standout_terms, volume"),
        (["refund", "--sort", "loudest"], "invalid choice: 'loudest'"),
        (["migrate", "--since", "7d"], "--since: only for a search, not for `moments search migrate`"),
    ],
)
def test_bad_options_exit_2_with_one_clear_line(
    tmp_home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    db = tmp_home / "never.db"
    try:
        status = main(["search", *argv, "--store", str(db)])
    except SystemExit as exc:  # argparse's own errors (a choice, an option an action does not take)
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # argparse's own errors print the usage first
    assert last.startswith("moments search: error:") and message in last, err
    assert not db.exists()  # refused before a store was opened (or created)


def test_all_json_streams_jsonl(dated_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "refund", "--store", dated_store, "--json", "--all", "--sort", "recent"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [Post.model_validate_json(line).native_id for line in lines] == ["hour", "days", "weeks", "undated"]
    # Without --all, --json stays one array.
    assert main(["search", "refund", "--store", dated_store, "--json", "--limit", "2"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_all_json_into_a_closed_pipe_is_quiet(
    dated_store: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class ClosedPipe:
        writes = 0

        def write(self, text: str) -> int:
            ClosedPipe.writes += 1
            raise BrokenPipeError

        def flush(self) -> None:
            raise BrokenPipeError

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main(["search", "refund", "--store", dated_store, "--json", "--all"]) == 0
    assert ClosedPipe.writes == 1  # stopped at the first refused line
    assert capsys.readouterr().err == ""


def test_agg_prints_json_and_a_table(
    dated_store: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["search", "--agg", "volume", "--store", dated_store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "name": "volume",
        "total": 4,
        "buckets": [{"source": "test", "lang": None, "posts": 4}],
    }
    assert main(["search", "--agg", "volume", "refund", "--since", "7d", "--store", dated_store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 2
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["search", "--agg", "moment_share", "--store", dated_store]) == 0
    assert "moments per touchpoint" in capsys.readouterr().out
    assert main(["search", "--agg", "top_authors", "--store", dated_store]) == 0
    out = capsys.readouterr().out
    assert "widest reach" in out and "most complaints" in out
