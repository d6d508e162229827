"""Customer-journey touchpoint taxonomies: the fixed default and brand-specific ones.

The default taxonomy has a trained head. A brand can replace or extend it in config
with labels, descriptions and a few examples; those are scored zero/few-shot from
the encoder's sentence embeddings (one prototype per label from its description and
examples, cosine similarity, softmax with a temperature), so custom labels need no
retraining.

Config shape (YAML or JSON, as a mapping)::

    taxonomy:
      mode: extend            # or "replace" (default: replace when touchpoints are given)
      touchpoints:
        - id: loyalty_program
          label: Loyalty program
          description: points, miles, status tiers, member benefits
          examples: ["my miles never posted", "gold status perks are great"]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Touchpoint:
    """One label of a taxonomy."""

    id: str
    label: str
    description: str
    examples: tuple[str, ...] = field(default_factory=tuple)

    def prototype_texts(self) -> list[str]:
        """Texts whose embeddings form this label's prototype: the description, then each example."""
        return [f"{self.label}: {self.description}", *self.examples]


DEFAULT_TAXONOMY: tuple[Touchpoint, ...] = (
    Touchpoint(
        "first_impression",
        "First impression",
        "marketing and first contact only: ads, campaigns, slogans, brand announcements, a new livery, "
        "the first look at a store or website before using it; not a first flight or first order",
        (
            "your new ad campaign is brilliant",
            "saw the billboard, what a tacky slogan",
            "the new logo and livery look great",
        ),
    ),
    Touchpoint(
        "digital_experience",
        "Digital experience",
        "website or app usability, bugs, crashes, login problems, app outages",
        ("the app keeps crashing when I log in", "website is down again", "love the new app design, so easy to use"),
    ),
    Touchpoint(
        "purchase_booking",
        "Purchase and booking",
        "buying and booking: ordering, checkout, availability, making, changing or cancelling a reservation or "
        "booking, name changes, opening or closing an account, even when support was contacted about it",
        (
            "tried to book a seat but checkout failed",
            "the item is out of stock everywhere",
            "I couldn't change the name on my reservation",
        ),
    ),
    Touchpoint(
        "price_billing",
        "Price and billing",
        "prices, fees, value for money, charges, invoices, double charges, unknown charges on a statement, "
        "exchange rates, being overcharged",
        ("charged twice for one order", "hidden fees on my bill", "great value for the price"),
    ),
    Touchpoint(
        "fulfilment",
        "Fulfilment and delivery",
        "getting what was bought when promised: shipping, delivery, late or missing orders, flight delays and "
        "cancellations by the company, a transfer stuck as pending, service outages; not queues, not quality",
        ("my package is a week late", "flight delayed three hours", "delivery arrived a day early"),
    ),
    Touchpoint(
        "product_experience",
        "Product experience",
        "the core product or service in use: the seat, legroom, comfort, cleanliness, food and drink, on-board "
        "wifi, the room, the ride, a card or account working or failing when used, quality, broken items",
        (
            "the seat was so uncomfortable",
            "the burger was cold and bland",
            "this jacket fell apart after a week",
            "my card keeps getting declined at the shop",
        ),
    ),
    Touchpoint(
        "staff_interaction",
        "Staff interaction",
        "frontline staff in person: rude or helpful employees, crew, gate agents, waiters, cashiers, drivers",
        ("the cashier was so rude to me", "the flight attendant went above and beyond", "waiter ignored us all night"),
    ),
    Touchpoint(
        "customer_support",
        "Customer support",
        "the support channel itself: calls, chat, email replies, hold times on the phone, chat bots, a support "
        "agent's competence, unresolved tickets, no reply from support",
        ("on hold for two hours with support", "nobody answers my emails", "the chat agent fixed it in minutes"),
    ),
    Touchpoint(
        "waiting_queues",
        "Waiting and queues",
        "queues and lines on site: at the counter, check-in, bag drop, security, boarding, to be seated, at the "
        "till, crowding; not phone hold times, not a delayed departure",
        (
            "the line at security was an hour long",
            "waited forever to be seated",
            "no queue at all this morning",
            "45 minutes in the check-in line",
        ),
    ),
    Touchpoint(
        "returns_recovery",
        "Returns and recovery",
        "returns, refunds, compensation, vouchers and credits, claims; lost, stolen or damaged belongings: lost "
        "luggage, a broken wheelchair, a lost or stolen card, fraud on the card",
        (
            "still waiting for my refund",
            "they lost my luggage",
            "returning it was painless",
            "my card was stolen, please block it",
        ),
    ),
    Touchpoint(
        "other",
        "Other",
        "general chatter, news or opinions not about a specific part of the customer journey",
        ("what a game last night", "happy friday everyone", "thinking about the weekend"),
    ),
)

TOUCHPOINTS: tuple[str, ...] = tuple(tp.id for tp in DEFAULT_TAXONOMY)
"""Ids of the default taxonomy, in head order."""


@dataclass(frozen=True)
class Taxonomy:
    """An ordered set of touchpoints."""

    touchpoints: tuple[Touchpoint, ...] = DEFAULT_TAXONOMY

    @property
    def ids(self) -> tuple[str, ...]:
        """Label ids, in score order."""
        return tuple(tp.id for tp in self.touchpoints)

    @property
    def is_default(self) -> bool:
        """True when this is exactly the default taxonomy (the trained head applies)."""
        return self.touchpoints == DEFAULT_TAXONOMY

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> Taxonomy:
        """Build a taxonomy from a config mapping (see module docstring) or a bare list of touchpoints.

        Raises:
            ValueError: A touchpoint lacks an id, an id repeats, or the mode is unknown.
        """
        if config is None:
            return cls()
        if isinstance(config, Mapping):
            items = list(config.get("touchpoints") or [])
            mode = str(config.get("mode", "replace"))
        else:
            items, mode = list(config), "replace"
        if mode not in ("replace", "extend"):
            raise ValueError(f"taxonomy mode must be 'replace' or 'extend', not {mode!r}")
        defaults = {tp.id: tp for tp in DEFAULT_TAXONOMY}
        custom: list[Touchpoint] = []
        for item in items:
            tp_id = str(item.get("id") or "").strip()
            if not tp_id:
                raise ValueError(f"taxonomy entry without an id: {dict(item)!r}")
            base = defaults.get(tp_id)
            examples = item.get("examples")
            custom.append(
                Touchpoint(
                    id=tp_id,
                    label=str(item.get("label") or (base.label if base else tp_id.replace("_", " "))),
                    description=str(item.get("description") or (base.description if base else tp_id.replace("_", " "))),
                    examples=tuple(str(e) for e in examples) if examples else (base.examples if base else ()),
                )
            )
        if mode == "extend":
            replaced = {tp.id: tp for tp in custom}
            merged = [replaced.pop(tp.id, tp) for tp in DEFAULT_TAXONOMY]
            custom = merged + [tp for tp in custom if tp.id in replaced]
        ids = [tp.id for tp in custom]
        if len(set(ids)) != len(ids):
            raise ValueError(f"taxonomy ids repeat: {ids}")
        if not custom:
            raise ValueError("taxonomy has no touchpoints")
        return cls(tuple(custom))
