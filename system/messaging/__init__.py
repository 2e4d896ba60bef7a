"""The reliable messaging core of the platform (RabbitMQ quorum queues, zero loss by construction).

Flow of one message::

    service tx ──(same SQLite tx)──► outbox row ──OutboxRelay──► ConfirmingPublisher ──► exchange
        (confirm window, mandatory, timeout, republish same id on nack/timeout/lost channel)
    work queue ──InboxConsumer──► [tx: inbox insert + handler effects] ─commit─► ack
        handler error → RetryTier delay queue (TTL) → back to the work queue → … → ParkingLot
        malformed → ParkingLot at once;  broker x-delivery-limit → ParkingLot (at-least-once DLX)

Modules: :mod:`.topology` (topology as code, permissions), :mod:`.declare`, :mod:`.publisher`,
:mod:`.outbox` / :mod:`.relay`, :mod:`.inbox` / :mod:`.consumer`, :mod:`.retry`, :mod:`.parking`,
:mod:`.settings`, :mod:`.cli`, :mod:`.bench`.
"""

from .consumer import InboxConsumer, MalformedMessage
from .declare import TopologyConflict, declare_topology
from .envelope import InboundMessage, OutgoingMessage
from .parking import ParkedMessage, ParkingLot
from .publisher import ConfirmingPublisher, PublisherClosed, UnroutableMessage
from .relay import OutboxRelay
from .retry import Park, Retry, RetryPolicy
from .settings import MessagingSettings
from .topology import Binding, Exchange, RetryTier, Service, Topology, WorkQueue

__all__ = [
    "Binding",
    "ConfirmingPublisher",
    "Exchange",
    "InboundMessage",
    "InboxConsumer",
    "MalformedMessage",
    "MessagingSettings",
    "OutboxRelay",
    "OutgoingMessage",
    "Park",
    "ParkedMessage",
    "ParkingLot",
    "PublisherClosed",
    "Retry",
    "RetryPolicy",
    "RetryTier",
    "Service",
    "Topology",
    "TopologyConflict",
    "UnroutableMessage",
    "WorkQueue",
    "declare_topology",
]
