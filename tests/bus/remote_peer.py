"""A bus client in its own OS process, for the liveness tests (run as a script, not collected).

It connects over tcp+CURVE with the keys of ``--identity`` from ``--keys``, prints
``READY <peer name>`` once registered and, with ``--consume QUEUE --hold N``, takes N items of
work without acknowledging them and prints ``HOLDING <id hex> ...``. Then it holds on until it is
killed, or exits (saying BYE) when its stdin closes, so it never outlives the test that started it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bus import BusClient, Delivery, KeysDirectory
from config import BusSettings


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--keys", required=True, type=Path)
    parser.add_argument("--identity", required=True)
    parser.add_argument("--heartbeat", type=float, required=True)
    parser.add_argument("--liveness", type=int, required=True)
    parser.add_argument("--consume")
    parser.add_argument("--hold", type=int, default=1)
    return parser.parse_args(argv)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(argv: list[str]) -> None:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="child %(message)s")
    keys = KeysDirectory(args.keys)
    settings = BusSettings(heartbeat_interval_s=args.heartbeat, heartbeat_liveness=args.liveness)
    client = BusClient(
        args.endpoint,
        identity=args.identity,
        keypair=keys.identity_keypair(args.identity),
        server_key=keys.broker_public_key(),
        settings=settings,
    )
    await client.start(timeout=10)
    say(f"READY {client.peer_name}")
    held: list[Delivery] = []  # kept referenced, never acknowledged
    if args.consume:
        consumer = await client.consume(args.consume, credit=args.hold)
        while len(held) < args.hold:
            held.append(await consumer.get(timeout=30))
        say("HOLDING " + " ".join(d.envelope.id.hex() for d in held))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    await client.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
