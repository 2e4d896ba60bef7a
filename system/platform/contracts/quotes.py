"""Quoting ↔ dispatch on the ``quotes`` exchange: the suitable quotes of a round, and the request to
quote an order again."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from system.domain.common import Frozen
from system.domain.quoting import Quote
from system.messaging.envelope import OutgoingMessage
from system.platform.topology import DELIVERY_QUOTED, DELIVERY_REQUOTE, QUOTES

from .headers import delivery_message


class DeliveryQuoted(Frozen):
    """Quoting → dispatch: the suitable quotes, best first (``rank_quotes``); dispatch books them in order.

    ``round``: 1 for the order's first quotes, ``n`` for the answer to dispatch's ``n-1``-th
    :class:`RequoteRequested`. ``book_by``: the order's own deadline (quoting derives it from the
    retailer's pickup window, capped by a default), until which a transient failure is answered with a
    new round rather than giving up. ``pending``: see the field.
    """

    type: Literal["delivery.quoted"] = "delivery.quoted"
    message_id: str
    delivery_id: str
    order_reference: str
    retailer_id: str
    options: tuple[Quote, ...]
    decided_at: AwareDatetime
    round: int = Field(default=1, ge=1)
    book_by: AwareDatetime | None = None
    #: couriers asked in this round that had not answered when it was decided but answer other orders:
    #: they may still quote, so running out of ``options`` is not yet a refusal by every courier
    pending: tuple[str, ...] = ()


class RequoteRequested(Frozen):
    """Dispatch → quoting: round ``round``'s options ran out for transient reasons (a quote expired while
    the brokers were down, a courier never answered), before the order's deadline: ask the couriers again.

    ``refused`` lists the couriers that refused the order for good (they declined or had no driver):
    quoting does not ask them again. Quoting answers with a :class:`DeliveryQuoted` of round
    ``round + 1`` (or a ``no_courier`` lifecycle event), once: a repeated request for a round it already
    moved past changes nothing.
    """

    type: Literal["delivery.requote"] = "delivery.requote"
    message_id: str
    delivery_id: str
    order_reference: str
    round: int = Field(ge=1)
    reason: str
    refused: tuple[str, ...] = ()


def quoted_message(m: DeliveryQuoted) -> OutgoingMessage:
    """``quotes`` → ``delivery.quoted``."""
    return delivery_message(QUOTES, DELIVERY_QUOTED, m)


def quoted_message_id(delivery_id: str, round_: int = 1) -> str:
    """The id of round ``round_``'s :class:`DeliveryQuoted` (round 1 keeps the id it had before rounds)."""
    base = f"{delivery_id}:{DELIVERY_QUOTED}"
    return base if round_ <= 1 else f"{base}:{round_}"


def requote_message(m: RequoteRequested) -> OutgoingMessage:
    """``quotes`` → ``delivery.requote`` (quoting's ``quoting.orders`` queue is bound to it)."""
    return delivery_message(QUOTES, DELIVERY_REQUOTE, m)


def requote_message_id(delivery_id: str, round_: int) -> str:
    """The id of dispatch's request to requote after round ``round_``."""
    return f"{delivery_id}:requote:{round_}"
