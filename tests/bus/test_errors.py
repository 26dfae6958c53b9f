"""One refusal family: whatever refused a message, the caller catches ``Refused``."""

from __future__ import annotations

import pytest

from bus import BusError, Busy, EnvelopeError, NoResponder, Refused, RemoteError
from bus.errors import remote_error
from bus.topics import check_topic
from config import TaskbusError
from tests.conftest import ClientFactory


def test_every_refusal_is_a_refused_with_its_code_and_reason() -> None:
    bad_bytes = EnvelopeError("malformed", "not msgpack")
    remote = RemoteError("denied", "'eve' may not ask 'store.get'")
    for error in (Refused("busy", "try later"), bad_bytes, remote):
        assert isinstance(error, Refused)
        assert isinstance(error, BusError)
        assert isinstance(error, TaskbusError)
    assert isinstance(bad_bytes, ValueError)  # still a ValueError for callers that decode
    assert not isinstance(remote, ValueError)
    assert (bad_bytes.code, bad_bytes.reason) == ("malformed", "not msgpack")
    assert (remote.code, remote.reason, remote.topic) == (
        "denied",
        "'eve' may not ask 'store.get'",
        None,
    )
    assert str(Refused("busy", "try later")) == "busy: try later"
    assert str(bad_bytes) == "malformed: not msgpack"
    assert str(remote) == "denied: 'eve' may not ask 'store.get'"


def test_a_remote_error_names_the_topic_it_answered_when_given() -> None:
    error = RemoteError("not_found", "task 'x' not found", topic="store.get")
    assert str(error) == "store.get: not_found: task 'x' not found"
    assert (error.topic, error.code) == ("store.get", "not_found")
    assert error.reason == "task 'x' not found"


def test_a_bad_topic_is_refused() -> None:
    with pytest.raises(Refused, match=r"^topic: ") as caught:
        check_topic("Not A Topic")
    assert caught.value.code == "topic"


async def test_a_broker_refusal_reaches_the_asker_as_refused(make_client: ClientFactory) -> None:
    asker = await make_client("asker")
    with pytest.raises(Refused) as caught:
        await asker.ask("nobody.serves.this", timeout=5)
    assert type(caught.value) is NoResponder  # the most precise class: a RemoteError
    assert isinstance(caught.value, RemoteError)
    assert caught.value.code == "no_responder"


def test_a_remote_refusal_gets_its_most_precise_class() -> None:
    assert type(remote_error("busy", "full")) is Busy
    assert type(remote_error("no_responder", "nobody")) is NoResponder
    assert type(remote_error("denied", "no")) is RemoteError
    assert str(remote_error("busy", "full", topic="store.x")) == "store.x: busy: full"
