"""The client's state without a socket: what it queues, and what it makes of the broker's frames."""

from __future__ import annotations

import pytest

from bus import RemoteError, wire
from bus.session import ClientSession

MAX = 1 << 20


async def test_output_coalesces_into_runs_and_leaves_as_frames_are_sent() -> None:
    urgent: list[bool] = []
    session = ClientSession("tester", MAX, urgent.append)
    session.publish("demo.a", None)
    session.publish("demo.b", None)
    session.settle(bytes(16), None)
    session.ask("demo.ask", None)
    assert urgent == [False, False, False, True]  # only the request is waited on
    assert [(command, len(items)) for command, items in session.out] == [
        (wire.PUBLISH, 2),
        (wire.ACK, 1),
        (wire.REQUEST, 1),
    ]
    sent: list[tuple[bytes, int, int]] = []
    while (frame := session.next_frame(MAX)) is not None:
        command, body, count = frame
        sent.append((command, len(wire.unpack_body(body, MAX)), count))
        session.sent(count)
    assert sent == [(wire.PUBLISH, 2, 2), (wire.ACK, 1, 1), (wire.REQUEST, 1, 1)]
    assert (session.out, session.out_count) == ([], 0)


async def test_an_error_frame_fails_the_ask_it_names() -> None:
    session = ClientSession("tester", MAX, lambda urgent: None)
    request_id, future = session.ask("store.get", None)
    error = {
        "code": "denied",
        "reason": "no",
        "id": None,
        "correlation_id": request_id,
        "ref": None,
    }
    session.receive([wire.ERROR, wire.pack([error])])
    with pytest.raises(RemoteError, match=r"^denied: no$"):
        future.result()


async def test_reregistering_queues_everything_the_broker_must_relearn() -> None:
    session = ClientSession("tester", MAX, lambda urgent: None)
    session.subscribe(("b.", "a."), 10)
    session.serve(("svc.",), 10)
    session.consume("work", 5)
    session.enqueue("work", None, None)
    session.out.clear()
    session.out_count = 0
    session.reregister()
    runs = session.out
    assert [command for command, _ in runs] == [
        wire.SUBSCRIBE,
        wire.SERVE,
        wire.CONSUME,
        wire.ENQUEUE,
    ]
    assert runs[0][1][0]["prefixes"] == ["a.", "b."]
    assert (runs[2][1][0]["queue"], runs[2][1][0]["credit"]) == ("work", 5)
