"""The message bus: envelopes, an authenticated ZeroMQ broker and its asyncio client.

Knows nothing of scheduling; imports nothing of taskbus but ``config``.
"""

from bus.broker import Broker
from bus.client import BusClient
from bus.envelope import PROTOCOL_VERSION, Envelope, decode
from bus.errors import (
    AskTimeout,
    AuthError,
    BusClosed,
    BusError,
    Busy,
    EnvelopeError,
    NoResponder,
    Refused,
    RemoteError,
)
from bus.ids import format_message_id, new_message_id
from bus.keys import KeyPair, KeysDirectory, load_keypair, load_public_key, write_keypair
from bus.session import ERROR_KEY
from bus.subscription import Consumer, Delivery, Inbox, Subscription

__all__ = [
    "ERROR_KEY",
    "PROTOCOL_VERSION",
    "AskTimeout",
    "AuthError",
    "Broker",
    "BusClient",
    "BusClosed",
    "BusError",
    "Busy",
    "Consumer",
    "Delivery",
    "Envelope",
    "EnvelopeError",
    "Inbox",
    "KeyPair",
    "KeysDirectory",
    "NoResponder",
    "Refused",
    "RemoteError",
    "Subscription",
    "decode",
    "format_message_id",
    "load_keypair",
    "load_public_key",
    "new_message_id",
    "write_keypair",
]
