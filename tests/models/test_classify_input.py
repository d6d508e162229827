"""``moments classify`` takes what users have: any JSON object with a ``text``.

The handler runs as the CLI runs it (``models.cli.register`` on the ``moments`` root
parser, then ``args.handler(args)``); the shipped classifier is loaded once per session (the
``classifier`` fixture) and handed to the handler instead of a second load.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import models.classifier
from models import classify_posts, classify_records
from models.classifier import Classifier
from models.cli import register
from models.runtime import BATCH_JITTER
from moments.cli import build_parser
from moments.records import Classification, Post

MODELS_DIR = Path(models.classifier.__file__).resolve().parent

TEXTS = [
    "Two hours on hold and nobody could tell me where my refund is. Never again.",
    "The crew on my flight to Lisbon were wonderful, thank you!",
    "Store opens at 9 tomorrow.",
    "the app logs me out every time I try to pay",
    "Mi maleta nunca llegó y nadie contesta el teléfono 😡",
]


@dataclass
class Run:
    """One ``moments classify FILE -o OUT`` run."""

    code: int
    out: list[dict[str, Any]]
    raw_lines: list[str]
    stderr: str
    logged: list[str]


RunClassify = Callable[[Path], Run]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def run_classify(classifier: Classifier) -> Iterator[RunClassify]:
    """Run the real ``classify`` handler on a file; the classifier is the session's one."""

    def shared(artifacts_dir: Any = None, taxonomy: Any = None, runtime: Any = None) -> Any:
        assert artifacts_dir is None and taxonomy is None and runtime is None, "these tests use the shipped model"
        return classifier

    def run(path: Path) -> Run:
        parser = build_parser([register])  # the root parser with only the model stage's commands
        out = path.with_name(path.stem + ".classified.jsonl")
        args = parser.parse_args(["classify", str(path), "-o", str(out)])
        collect = _Collect()
        records_log = logging.getLogger("moments.records")
        records_log.addHandler(collect)
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                code = args.handler(args)
        finally:
            records_log.removeHandler(collect)
        raw_lines = out.read_text(encoding="utf-8").splitlines()
        return Run(code, [json.loads(line) for line in raw_lines], raw_lines, stderr.getvalue(), collect.messages)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models.classifier, "load_classifier", shared)
        yield run


def _post(native_id: str, text: str, **extra: Any) -> Post:
    return Post(
        id=f"test:{native_id}",
        source="test",
        native_id=native_id,
        text=text,
        crawled_at=datetime(2026, 1, 1, tzinfo=UTC),
        **extra,
    )


def _write(path: Path, lines: list[str], *, bom: bool = False) -> Path:
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_id_and_text_lines_are_all_classified_with_every_key_kept(
    tmp_path: Path, run_classify: RunClassify, classifier: Classifier
) -> None:
    records: list[dict[str, Any]] = []
    for i in range(200):
        record: dict[str, Any] = {"id": f"export-{i}", "source": "survey", "text": f"{TEXTS[i % len(TEXTS)]} #{i}"}
        if i % 3 == 0:  # keys the Post schema does not know, nested values, nulls
            record["customer"] = {"tier": "gold", "since": 2019, "tags": ["vip", None]}
            record["nps"] = i % 11
            record["ts"] = "2026-01-01 10:00"  # not a valid Post timestamp: kept as it is
        if i % 7 == 0:
            record = {"zzz_first": True, **record}  # key order is kept, not sorted
        records.append(record)
    path = _write(tmp_path / "export.jsonl", [json.dumps(r, ensure_ascii=False) for r in records])

    run = run_classify(path)

    assert run.code == 0
    assert "moments classify: 200 classified, 0 malformed lines skipped, " in run.stderr
    assert run.logged == []
    assert len(run.out) == 200
    for before, after in zip(records, run.out, strict=True):
        assert list(after) == [*before, "classification"]
        assert {k: v for k, v in after.items() if k != "classification"} == before
        result = Classification.model_validate(after["classification"])
        assert result.model_version == classifier.model_version
        assert after["classification"] == result.model_dump(mode="json")
    assert Classification.model_validate(run.out[0]["classification"]).sentiment == "negative"
    assert Classification.model_validate(run.out[1]["classification"]).sentiment == "positive"


def test_bad_lines_are_dropped_with_line_number_and_reason(tmp_path: Path, run_classify: RunClassify) -> None:
    lines = [
        json.dumps({"id": "a", "text": TEXTS[0]}),  # 1 (after a byte-order mark)
        "{not json",  # 2
        "[1, 2, 3]",  # 3
        json.dumps({"id": "c"}),  # 4
        json.dumps({"id": "d", "text": ""}),  # 5
        json.dumps({"id": "e", "text": "   "}),  # 6
        json.dumps({"id": "f", "text": 42}),  # 7
        "",  # 8: blank, skipped silently
        json.dumps({"id": "g", "text": TEXTS[1], "classification": "stale", "after": 1}),  # 9
        '"just a string"',  # 10
        json.dumps({"id": "h", "text": ["a", "list"]}),  # 11
    ]
    path = _write(tmp_path / "mixed.jsonl", lines, bom=True)

    run = run_classify(path)

    assert run.code == 0
    assert "moments classify: 2 classified, 8 malformed lines skipped, " in run.stderr
    assert [r["id"] for r in run.out] == ["a", "g"]
    # A classification already on the line is replaced where it stood.
    assert list(run.out[1]) == ["id", "text", "classification", "after"]
    for record in run.out:
        Classification.model_validate(record["classification"])
    expected = {
        2: "not valid JSON",
        3: "expected a JSON object, got list",
        4: "text: missing",
        5: "text: must be a non-empty string",
        6: "text: must be a non-empty string",
        7: "text: must be a non-empty string",
        10: "expected a JSON object, got str",
        11: "text: must be a non-empty string",
    }
    assert len(run.logged) == len(expected)
    for (number, reason), message in zip(expected.items(), run.logged, strict=True):
        assert f"{path} line {number} dropped: {reason}" in message


def test_full_posts_round_trip_as_before(tmp_path: Path, run_classify: RunClassify, classifier: Classifier) -> None:
    posts = [
        _post(
            "1",
            TEXTS[0],
            brand=["northwind"],
            title="Never again",  # read with the text, as classify_posts reads it
            extra={"nested": {"a": [1, 2]}},
            mentions=["@northwind"],
            urls=["https://x.example/1"],
            created_at=datetime(2025, 12, 31, 23, 0, tzinfo=UTC),
        ),
        _post("2", TEXTS[1], lang="en"),
    ]
    path = _write(tmp_path / "posts.jsonl", [p.to_json() for p in posts])

    run = run_classify(path)

    assert run.code == 0
    assert "moments classify: 2 classified, 0 malformed lines skipped, " in run.stderr
    before = list(classify_posts(posts, classifier))  # what `moments classify` wrote before
    jitter = BATCH_JITTER[classifier.runtime]
    for line, old in zip(run.raw_lines, before, strict=True):
        post = Post.model_validate_json(line)
        assert post.classification is not None
        assert post.model_dump(exclude={"classification"}) == old.model_dump(exclude={"classification"})
        assert list(json.loads(line)) == list(json.loads(old.to_json()))
        assert old.classification is not None
        new_c, old_c = post.classification, old.classification
        assert (new_c.sentiment, new_c.touchpoint, new_c.moment, new_c.lang) == (
            old_c.sentiment,
            old_c.touchpoint,
            old_c.moment,
            old_c.lang,
        )
        # The command reads in chunks: its batches need not be these, and scores may move by the runtime's jitter.
        assert new_c.severity == pytest.approx(old_c.severity, abs=jitter)
        for key, value in old_c.touchpoint_scores.items():
            assert new_c.touchpoint_scores[key] == pytest.approx(value, abs=jitter)
    # The title is read: classifying the bare text would be another input.
    titled = classifier.classify([f"Never again. {TEXTS[0]}"])[0]
    first = Post.model_validate_json(run.raw_lines[0]).classification
    assert first is not None
    assert first.sentiment_scores["negative"] == pytest.approx(titled.sentiment_scores["negative"], abs=jitter)
    untitled = classifier.classify([TEXTS[0]])[0]
    read = first.sentiment_scores["negative"]
    assert abs(read - titled.sentiment_scores["negative"]) < abs(read - untitled.sentiment_scores["negative"])


def test_classify_records_streams_in_chunks(classifier: Classifier) -> None:
    pulled = 0

    def source() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for i, text in enumerate(TEXTS * 2):
            pulled += 1
            yield {"n": i, "text": text, "title": None}

    stream = classify_records(source(), classifier, chunk_size=3)
    first = next(stream)
    assert pulled == 3  # one chunk read, not the whole input
    rest = list(stream)
    out = [first, *rest]
    assert [r["n"] for r in out] == list(range(len(TEXTS) * 2))
    assert all(list(r) == ["n", "text", "title", "classification"] for r in out)
    whole = list(classify_records([{"n": i, "text": t} for i, t in enumerate(TEXTS * 2)], classifier))
    assert [r["classification"]["sentiment"] for r in out] == [r["classification"]["sentiment"] for r in whole]


def test_classify_records_leaves_its_input_alone_and_needs_a_text(classifier: Classifier) -> None:
    record = {"text": TEXTS[2], "classification": None}
    (out,) = classify_records([record], classifier)
    assert record == {"text": TEXTS[2], "classification": None}
    assert out["classification"] is not None
    with pytest.raises(ValueError, match="record 2 has no string 'text'"):
        list(classify_records([{"text": "fine"}, {"body": "no text"}], classifier))


def test_models_never_import_crawlers() -> None:
    offenders = []
    for path in sorted(MODELS_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] == "crawlers"]
    assert offenders == []


def test_classify_help_explains_the_input() -> None:
    from models.cli import CLASSIFY_HELP

    assert "`text`" in CLASSIFY_HELP
    assert "moments index" in CLASSIFY_HELP
    assert "moments crawl import --query FILE --config brands.yaml" in CLASSIFY_HELP
