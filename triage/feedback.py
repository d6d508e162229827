"""``moments feedback export``: the care team's dismissal reasons as labelled JSONL for retraining the classifier.

When an agent dismisses a flag, the reason is kept in the flag's event log (the note of
the dismiss event). Three kinds of reason say what the classifier got wrong, and become
labels (:func:`parse_reason`):

* ``not negative`` (optionally ``not negative: neutral`` or ``: positive``), or just
  ``neutral`` / ``positive``: the sentiment was wrong; label ``not_negative``, or the
  sentiment named;
* ``wrong touchpoint: delivery``: the touchpoint was wrong; the label is the
  touchpoint id, matched to the default taxonomy by id, by label ("Fulfilment and
  delivery") or by a word only one label has ("delivery" is ``fulfilment``); any other
  name is kept as written (a brand's own touchpoint), lower case with ``_`` for spaces;
* ``spam``: not a customer at all; label ``spam``.

Other reasons ("duplicate", "handled by phone") teach the classifier nothing and are
skipped (counted on standard error). Each dismissed flag gives one line per post of
the flag that is still in the store (a burst gives several).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from models.taxonomy import DEFAULT_TAXONOMY
from moments.cli import Commands
from moments.errors import UsageError
from moments.records import FlagEvent, utc_now
from search.store import Store

LabelKind = Literal["sentiment", "touchpoint", "spam"]
#: The most dismissed flags one export reads.
MAX_FLAGS = 100_000

_NOT_NEGATIVE = re.compile(r"^not\s+negative\b\s*(?:[:\-–—,]\s*(?P<label>neutral|positive)\b)?", re.IGNORECASE)
_SENTIMENT = re.compile(r"^(?:sentiment\s*:\s*)?(?P<label>neutral|positive)\b", re.IGNORECASE)
_WRONG_TOUCHPOINT = re.compile(r"^wrong\s+touchpoint\b\s*(?:[:\-–—]\s*(?P<label>.+))?$", re.IGNORECASE | re.DOTALL)
_SPAM = re.compile(r"^spam\b", re.IGNORECASE)


@dataclass(frozen=True)
class Label:
    """What a dismissal reason teaches: the kind of mistake and the right label."""

    kind: LabelKind
    label: str


def _touchpoint_words() -> dict[str, str]:
    """Words that name exactly one default touchpoint (``delivery``: ``fulfilment``)."""
    owners: dict[str, set[str]] = {}
    for touchpoint in DEFAULT_TAXONOMY:
        for word in re.findall(r"[a-z]+", touchpoint.label.lower()):
            if len(word) > 3:
                owners.setdefault(word, set()).add(touchpoint.id)
    return {word: next(iter(ids)) for word, ids in owners.items() if len(ids) == 1}


_WORDS = _touchpoint_words()


def touchpoint_label(text: str) -> str | None:
    """The touchpoint id a reason names: a default id, a default label, a word only one label has, else the text."""
    name = " ".join(text.strip().strip(".").split()).lower()
    if not name:
        return None
    for touchpoint in DEFAULT_TAXONOMY:
        if name in (touchpoint.id, touchpoint.label.lower(), touchpoint.id.replace("_", " ")):
            return touchpoint.id
    if name in _WORDS:
        return _WORDS[name]
    return re.sub(r"[^a-z0-9._-]+", "_", name).strip("_") or None


def parse_reason(reason: str) -> Label | None:
    """The label a dismissal reason gives, or ``None`` when it is no classifier mistake."""
    text = reason.strip()
    if match := _NOT_NEGATIVE.match(text):
        return Label("sentiment", (match.group("label") or "not_negative").lower())
    if match := _SENTIMENT.match(text):
        return Label("sentiment", match.group("label").lower())
    if match := _WRONG_TOUCHPOINT.match(text):
        label = touchpoint_label(match.group("label") or "")
        return Label("touchpoint", label) if label else None
    if _SPAM.match(text):
        return Label("spam", "spam")
    return None


def _dismissal(events: list[FlagEvent]) -> FlagEvent | None:
    """The event that dismissed the flag last (its note is the reason)."""
    for event in reversed(events):
        if any(c.field == "status" and c.new == "dismissed" for c in event.changes):
            return event
    return None


@dataclass
class ExportCounts:
    """What an export found: lines written, dismissals used and skipped (no label, no post)."""

    lines: int = 0
    dismissals: int = 0
    unlabelled: int = 0
    missing_posts: int = 0


def feedback_rows(
    store: Store, *, since: datetime | None = None, counts: ExportCounts | None = None
) -> Iterator[dict[str, Any]]:
    """The labelled lines, oldest dismissal first: one per post of each dismissed flag with a usable reason."""
    counts = counts if counts is not None else ExportCounts()
    found: list[tuple[datetime, str, FlagEvent, list[str]]] = []
    for flag in store.list_flags(status=("dismissed",), limit=MAX_FLAGS):
        event = _dismissal(store.flag_events(flag.id))
        if event is None or (since is not None and event.at < since):
            continue
        found.append((event.at, flag.id, event, flag.post_ids))
    found.sort(key=lambda row: (row[0], row[1]))
    for at, flag_id, event, post_ids in found:
        label = parse_reason(event.note or "")
        if label is None:
            counts.unlabelled += 1
            continue
        counts.dismissals += 1
        posts = store.get_many(post_ids)
        for post_id in post_ids:
            post = posts.get(post_id)
            if post is None:
                counts.missing_posts += 1
                continue
            counts.lines += 1
            yield {
                "text": post.text,
                "post_id": post.id,
                "label_kind": label.kind,
                "label": label.label,
                "reason": event.note,
                "flag_id": flag_id,
                "at": at.isoformat().replace("+00:00", "Z"),
            }


# ------------------------------------------------------------------------------ the command


DESCRIPTION = """\
Export the care team's dismissal reasons as labelled JSONL, to retrain the classifier
(python -m models.train --feedback FILE).

An agent who dismisses a flag gives a reason; these reasons become labels:

  not negative               label_kind "sentiment",  label "not_negative"
  not negative: neutral      label_kind "sentiment",  label "neutral" (or "positive")
  neutral / positive         label_kind "sentiment",  label as written
  wrong touchpoint: delivery label_kind "touchpoint", label "fulfilment" (a default id,
                             label or word of a label; else the name as written)
  spam                       label_kind "spam",       label "spam"

Other reasons are skipped (counted on standard error). Each dismissed flag gives one
line per post of it still in the store, oldest dismissal first:

  {"text": "...", "post_id": "reddit:abc", "label_kind": "touchpoint", "label": "fulfilment",
   "reason": "wrong touchpoint: delivery", "flag_id": "post:reddit:abc", "at": "2026-11-02T10:15:00Z"}

text: the post's text; post_id: the post; reason: the agent's words; flag_id: the
dismissed flag; at: when it was dismissed (UTC).

WHEN is an ISO date (2026-11-01), an ISO time (2026-11-01T09:00Z) or a time before
now (90m, 36h, 7d, 2w).

examples:
  moments feedback export -o feedback.jsonl
  moments feedback export --since 30d -o feedback.jsonl --store http://127.0.0.1:9200
  moments feedback export --since 2026-11-01 | wc -l

exit status: 0 written; 1 the store failed; 2 bad usage (an unreadable --since, an
output path that cannot be written).
"""


def _cmd_export(args: argparse.Namespace) -> int:
    from search import open_store
    from triage.report_cli import parse_when, write_atomically

    since = parse_when(args.since, now=utc_now(), option="--since") if args.since else None
    output: Path | None = args.output
    if output is not None and output.is_dir():
        raise UsageError(f"-o {output} is a folder; name the JSONL file to write (e.g. {output / 'feedback.jsonl'})")
    counts = ExportCounts()
    with open_store(args.store) as store:
        lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in feedback_rows(store, since=since, counts=counts)]
    if output is None:
        sys.stdout.writelines(lines)
        sys.stdout.flush()
    else:
        try:
            write_atomically(output, "".join(lines))
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    where = f" to {output}" if output is not None else ""
    print(
        f"feedback: {counts.lines} lines{where} from {counts.dismissals} dismissals; skipped {counts.unlabelled} "
        f"with a reason that is no label, {counts.missing_posts} posts no longer stored",
        file=sys.stderr,
    )
    return 0


def register(commands: Commands) -> None:
    """Add ``moments feedback export`` (dismissal reasons as labelled JSONL)."""
    parser = commands.add(
        "feedback",
        help="the care team's feedback for the classifier: export",
        description=DESCRIPTION,
        handler=_cmd_no_action,
    )
    actions = commands.group(parser, dest="feedback_action")
    export = actions.add(
        "export",
        help="write dismissal reasons as labelled JSONL for retraining",
        description=DESCRIPTION,
        handler=_cmd_export,
        options=("store",),
    )
    export.add_argument("-o", "--output", type=Path, metavar="FILE", help="the JSONL file (default: standard output)")
    export.add_argument("--since", metavar="WHEN", help="only dismissals at or after WHEN")


def _cmd_no_action(args: argparse.Namespace) -> int:
    raise UsageError("say what to do: moments feedback export [-o FILE] [--since WHEN]")
