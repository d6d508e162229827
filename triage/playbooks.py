"""Recovery playbooks per touchpoint: the steps of a service recovery and the response templates for each.

A playbook has four steps, in the order a recovery goes: acknowledge, apologise, act,
follow up. Each step has guidance for the agent and one or more alternative response
templates. That follows the moment-of-truth practice: write alternative responses, see
which one recovers customers (:mod:`triage.metrics` breaks the recovery rate down by
template), then make it the standard. A response records the template it used
(``template_id`` on the respond action), so the comparison is measured, not guessed.

Playbooks live in the configured store, as one :class:`~moments.accounts.AppSetting`
per touchpoint (``playbook:{touchpoint}``), so every app process serves the same ones.
Until a lead saves one, a touchpoint gets the built-in default
(:func:`default_playbook`): written for the default taxonomy's touchpoints, and a
generic one for any other (a brand's own touchpoint).

Edits are compare-and-set on the playbook's ``revision``: a lead editing a page that
another lead saved meanwhile gets :class:`StaleRevision` and loses nothing. The store's
settings have no atomic compare-and-set yet, so the check is read-compare-write: two
saves within the same few milliseconds could both pass it (see the lead's notes).

Templates fill in ``{handle}`` and ``{touchpoint}`` (:func:`fill_template`) and nothing
else: no format specs, no attribute access, so a template cannot reach into anything.
The filled text is plain text; pages escape it like every other value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.taxonomy import DEFAULT_TAXONOMY
from moments.accounts import AppSetting
from moments.errors import MomentsError
from search.store import Store

Step = Literal["acknowledge", "apologise", "act", "follow_up"]
#: The steps of every playbook, in the order a recovery goes.
STEPS: tuple[Step, ...] = ("acknowledge", "apologise", "act", "follow_up")
STEP_LABELS: dict[Step, str] = {
    "acknowledge": "Acknowledge",
    "apologise": "Apologise",
    "act": "Act",
    "follow_up": "Follow up",
}
#: A template id, as the respond action accepts it (``triage.actions.TEMPLATE_ID``).
TEMPLATE_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"
#: A touchpoint id a playbook can be kept for (it is part of a URL and a setting key).
TOUCHPOINT_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")
#: The placeholders a template may use.
PLACEHOLDERS = ("handle", "touchpoint")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
MAX_TEMPLATE_TEXT = 2000
MAX_TEMPLATES_PER_STEP = 10
SETTING_PREFIX = "playbook:"


class StaleRevision(MomentsError):
    """The playbook (or SLA table) changed since the editor read it: nothing was written (409).

    Attributes:
        expected: The revision the editor saw.
        actual: The revision stored now.
        changed_by: Who saved the stored one.
        changed_at: When.
    """

    def __init__(self, what: str, expected: int, actual: int, changed_by: str | None, changed_at: datetime | None):
        self.expected = expected
        self.actual = actual
        self.changed_by = changed_by
        self.changed_at = changed_at
        who = changed_by or "someone"
        when = f" at {changed_at:%Y-%m-%d %H:%M} UTC" if changed_at else ""
        super().__init__(f"{what} was changed by {who}{when} (revision {actual}, you edited {expected}); reload")


class ResponseTemplate(BaseModel):
    """One alternative response for a step; ``{handle}`` and ``{touchpoint}`` are filled in."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(pattern=TEMPLATE_ID, description="unique in the playbook; what a response records")
    text: str = Field(min_length=1, max_length=MAX_TEMPLATE_TEXT)

    @field_validator("text")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        unknown = sorted({m.group(1) for m in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", value)} - set(PLACEHOLDERS))
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}: use {{handle}} or {{touchpoint}}")
        return value


class PlaybookStep(BaseModel):
    """One step: what to do (``guidance``) and the alternative responses for it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    step: Step
    guidance: str = Field(default="", max_length=MAX_TEMPLATE_TEXT)
    templates: list[ResponseTemplate] = Field(default_factory=list, max_length=MAX_TEMPLATES_PER_STEP)


class PlaybookEdit(BaseModel):
    """A lead's edit of a playbook (``PUT /api/playbooks/{touchpoint}``): every step, and the revision read."""

    model_config = ConfigDict(extra="forbid")

    steps: list[PlaybookStep]
    if_revision: int = Field(ge=0, description="the revision the editor read (0: the built-in default)")

    @model_validator(mode="after")
    def _each_step_once_and_ids_unique(self) -> PlaybookEdit:
        check_steps(self.steps)
        return self


class Playbook(BaseModel):
    """The recovery playbook of one touchpoint.

    ``revision`` is 0 for the built-in default (never saved) and grows by one at each save.
    """

    touchpoint: str
    steps: list[PlaybookStep]
    revision: int = Field(default=0, ge=0)
    updated_at: datetime | None = None
    updated_by: str | None = None

    def templates(self) -> list[tuple[Step, ResponseTemplate]]:
        """Every template with its step, in step order."""
        return [(step.step, template) for step in self.steps for template in step.templates]

    def template(self, template_id: str) -> ResponseTemplate | None:
        """The template of that id, or ``None``."""
        return next((t for _, t in self.templates() if t.id == template_id), None)


def check_steps(steps: Iterable[PlaybookStep]) -> None:
    """Each step at most once, template ids unique across the playbook.

    Raises:
        ValueError: Not so.
    """
    seen_steps: set[str] = set()
    seen_ids: set[str] = set()
    for step in steps:
        if step.step in seen_steps:
            raise ValueError(f"step {step.step} given twice")
        seen_steps.add(step.step)
        for template in step.templates:
            if template.id in seen_ids:
                raise ValueError(f"template id {template.id!r} used twice")
            seen_ids.add(template.id)


def fill_template(text: str, *, handle: str | None, touchpoint: str | None) -> str:
    """``text`` with ``{handle}`` and ``{touchpoint}`` replaced; any other brace stays as written.

    A missing handle reads ``there`` ("Hi there"), a missing touchpoint ``your experience``.
    """
    values = {
        "handle": handle or "there",
        "touchpoint": touchpoint_words(touchpoint) if touchpoint else "your experience",
    }
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def touchpoint_words(touchpoint: str) -> str:
    """A touchpoint id as words in a sentence: the default taxonomy's label in lower case, else the id with spaces."""
    for known in DEFAULT_TAXONOMY:
        if known.id == touchpoint:
            return known.label.lower()
    return touchpoint.replace("_", " ")


def valid_touchpoint(touchpoint: str) -> bool:
    """Whether a playbook can be kept for ``touchpoint`` (an id usable in a URL and a setting key)."""
    return bool(TOUCHPOINT_ID.match(touchpoint))


# ------------------------------------------------------------------------------ defaults


#: What each step asks of the agent, for every touchpoint.
_GUIDANCE: dict[Step, str] = {
    "acknowledge": "Reply in public within the first-response SLA: show the customer a person has seen it.",
    "apologise": "Apologise for the experience without excuses or blame; do not argue facts in public.",
    "act": "Fix it or say exactly what happens next, by when, and who owns it; move details to a private channel.",
    "follow_up": "Come back once it is fixed and ask whether it is fixed for them; log the outcome in a note.",
}

#: The specific "act" wording per default touchpoint; the generic one covers the rest.
_ACT: dict[str, str] = {
    "first_impression": "Thanks for telling us how this came across, {handle}. I have passed it to the team "
    "that owns our {touchpoint} so they see it today.",
    "digital_experience": "{handle}, our digital team is looking into this now. Could you send us a DM with "
    "your device and app version so we can reproduce it?",
    "purchase_booking": "{handle}, send us a DM with your booking or order reference and we will sort out the "
    "booking for you directly.",
    "price_billing": "{handle}, please DM us the invoice or order reference: if you were charged wrongly we "
    "will refund the difference.",
    "fulfilment": "{handle}, DM us your order or booking reference and we will chase it and tell you the new "
    "time today.",
    "product_experience": "{handle}, that is not the quality we promise. DM us your order reference and we "
    "will replace it or refund you.",
    "staff_interaction": "{handle}, that is not how our staff should treat anyone. DM us when and where it "
    "happened so the right manager can follow it up.",
    "customer_support": "{handle}, I am taking this over from here myself. DM us your case number and I will "
    "not let go of it until it is solved.",
    "waiting_queues": "{handle}, we are adding people where the wait is longest. Tell us where you are and "
    "we will check it right now.",
    "returns_recovery": "{handle}, DM us your return or claim reference and we will check where your refund "
    "is and when it reaches you.",
}
_GENERIC_ACT = "{handle}, send us a DM with the details and a reference so we can put this right for you."


def _template_prefix(touchpoint: str) -> str:
    return touchpoint if re.match(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,80}$", touchpoint) else "default"


def default_playbook(touchpoint: str) -> Playbook:
    """The built-in playbook of ``touchpoint``, revision 0: two alternatives for the first steps.

    Template ids are ``{touchpoint}.{step}.{n}``, unique across all the defaults, so a
    recovery-rate breakdown by template never mixes two touchpoints' responses.
    """
    prefix = _template_prefix(touchpoint)
    texts: dict[Step, list[str]] = {
        "acknowledge": [
            "Hi {handle}, we have seen this and we are on it.",
            "Thanks for flagging this, {handle}. A member of our team is looking at it now.",
        ],
        "apologise": [
            "{handle}, we are sorry about your {touchpoint}. That is not the experience we want you to have.",
            "We let you down here, {handle}, and we apologise. No excuses.",
        ],
        "act": [_ACT.get(touchpoint, _GENERIC_ACT)],
        "follow_up": [
            "Hi {handle}, checking back in: is everything sorted with your {touchpoint} now?",
        ],
    }
    steps = [
        PlaybookStep(
            step=step,
            guidance=_GUIDANCE[step],
            templates=[
                ResponseTemplate(id=f"{prefix}.{step}.{n}", text=text) for n, text in enumerate(texts[step], start=1)
            ],
        )
        for step in STEPS
    ]
    return Playbook(touchpoint=touchpoint, steps=steps)


# ------------------------------------------------------------------------------ the store


def setting_key(touchpoint: str) -> str:
    """The setting a touchpoint's playbook is kept under."""
    return f"{SETTING_PREFIX}{touchpoint}"


def _from_setting(touchpoint: str, setting: AppSetting) -> Playbook | None:
    try:
        steps = [PlaybookStep.model_validate(step) for step in setting.value.get("steps", [])]
        revision = int(setting.value.get("revision", 1))
    except (ValidationError, TypeError, ValueError):
        return None
    return Playbook(
        touchpoint=touchpoint,
        steps=steps,
        revision=revision,
        updated_at=setting.updated_at,
        updated_by=setting.updated_by,
    )


def get_playbook(store: Store, touchpoint: str) -> Playbook:
    """The playbook of ``touchpoint``: the saved one, else the built-in default (an unreadable save counts as none)."""
    if valid_touchpoint(touchpoint):
        setting = store.get_setting(setting_key(touchpoint))
        if setting is not None:
            stored = _from_setting(touchpoint, setting)
            if stored is not None:
                return stored
    return default_playbook(touchpoint)


def playbook_touchpoints(extra: Iterable[str] = ()) -> list[str]:
    """The touchpoints the playbooks page lists: the default taxonomy's, then ``extra`` (flags' own), sorted."""
    defaults = [tp.id for tp in DEFAULT_TAXONOMY]
    others = sorted({tp for tp in extra if tp and tp not in defaults and valid_touchpoint(tp)})
    return defaults + others


def save_playbook(store: Store, touchpoint: str, edit: PlaybookEdit, *, by: str, at: datetime) -> Playbook:
    """Save a lead's edit when ``edit.if_revision`` is the stored revision; the new revision is one more.

    Raises:
        ValueError: ``touchpoint`` is not a valid id.
        StaleRevision: Someone saved it since the editor read it (nothing written).
    """
    if not valid_touchpoint(touchpoint):
        raise ValueError(f"not a touchpoint id: {touchpoint!r}")
    current = get_playbook(store, touchpoint)
    if current.revision != edit.if_revision:
        raise StaleRevision(
            f"the {touchpoint} playbook", edit.if_revision, current.revision, current.updated_by, current.updated_at
        )
    order = {step: n for n, step in enumerate(STEPS)}
    steps = sorted(edit.steps, key=lambda s: order[s.step])
    revision = current.revision + 1
    value: dict[str, Any] = {"revision": revision, "steps": [step.model_dump(mode="json") for step in steps]}
    store.put_setting(AppSetting(key=setting_key(touchpoint), value=value, updated_at=at, updated_by=by))
    return Playbook(touchpoint=touchpoint, steps=steps, revision=revision, updated_at=at, updated_by=by)


def parse_playbook_form(form: Iterable[tuple[str, Any]], touchpoint: str) -> PlaybookEdit:
    """A playbook edit from the page's form.

    Fields: ``if_revision``; per step ``guidance.{step}``; per template row
    ``template_id.{step}.{n}`` and ``template_text.{step}.{n}``. A row whose text is
    blank is removed; a new row without an id gets ``{touchpoint}.{step}.{n}``
    (:func:`fill_missing_ids`), so a lead may leave the id out.

    Raises:
        pydantic.ValidationError: The fields do not make a valid edit.
    """
    fields: dict[str, str] = {}
    for key, value in form:
        if isinstance(value, str):
            fields[key] = value
    rows: dict[str, dict[int, dict[str, str]]] = {step: {} for step in STEPS}
    for key, value in fields.items():
        kind, _, rest = key.partition(".")
        step, _, index = rest.partition(".")
        if kind in ("template_id", "template_text") and step in rows and index.isdigit():
            rows[step].setdefault(int(index), {})[kind] = value.strip()
    steps: list[dict[str, Any]] = []
    for step in STEPS:
        templates = [
            {"id": row.get("template_id", ""), "text": row["template_text"]}
            for _, row in sorted(rows[step].items())
            if row.get("template_text")
        ]
        steps.append({"step": step, "guidance": fields.get(f"guidance.{step}", ""), "templates": templates})
    fill_missing_ids(steps, touchpoint)
    revision = fields.get("if_revision", "").strip()
    return PlaybookEdit.model_validate({"steps": steps, "if_revision": int(revision) if revision.isdigit() else -1})


def fill_missing_ids(steps: list[dict[str, Any]], touchpoint: str) -> None:
    """Give templates without an id the next free ``{touchpoint}.{step}.{n}`` (in place)."""
    prefix = _template_prefix(touchpoint)
    taken = {str(t.get("id")) for s in steps for t in s.get("templates", []) if t.get("id")}
    for step in steps:
        n = 1
        for template in step.get("templates", []):
            if template.get("id"):
                continue
            while f"{prefix}.{step['step']}.{n}" in taken:
                n += 1
            template["id"] = f"{prefix}.{step['step']}.{n}"
            taken.add(template["id"])


def filled_templates(playbook: Playbook, *, handle: str | None, touchpoint: str | None) -> list[dict[str, Any]]:
    """The playbook's steps with each template's text filled in for one flag (plain text; the page escapes it)."""
    return [
        {
            "step": step.step,
            "label": STEP_LABELS[step.step],
            "guidance": step.guidance,
            "templates": [
                {"id": t.id, "text": fill_template(t.text, handle=handle, touchpoint=touchpoint)}
                for t in step.templates
            ],
        }
        for step in playbook.steps
    ]


def all_playbooks(store: Store, touchpoints: Iterable[str]) -> Mapping[str, Playbook]:
    """The playbook of each of ``touchpoints`` (saved or default), by touchpoint."""
    return {tp: get_playbook(store, tp) for tp in touchpoints}
