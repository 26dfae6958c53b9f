"""The ``taskbus`` command line.

User errors end in a one-line message and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from actors import cli_tasks
from actors.client import Unreachable
from actors.embedding import prepare_home
from actors.runner import run_one_actor, run_system
from bus import KeysDirectory, load_public_key
from bus.keys import check_identity
from config import Settings, load_settings
from config.errors import TaskbusError

log = logging.getLogger("taskbus.cli")

EXIT_UNCLEAN = 3  # a shutdown had to cancel work
EXIT_UNREACHABLE = 5


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.settings = _settings(args)
        logging.basicConfig(
            level=getattr(logging, args.settings.log_level.upper()),
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
            stream=sys.stderr,
        )
        result: int = args.func(args)
        sys.stdout.flush()  # a reader gone early (``taskbus health | head -1``) shows here
    except BrokenPipeError:
        # Not an error: the reader has what it wanted. Python flushes stdout again at exit,
        # so stdout becomes devnull to keep that quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Unreachable as exc:
        print(f"taskbus: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except TaskbusError as exc:
        print(f"taskbus: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskbus", description=__doc__)
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="data directory (default: $TASKBUS_HOME or ~/.local/share/taskbus)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="a TOML config file (default: $TASKBUS_CONFIG; see docs/configuration.md)",
    )
    parser.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run taskbus on this machine (creates keys on first run)")
    up.add_argument(
        "--endpoint",
        action="append",
        default=None,
        help="tcp:// or ipc:// endpoint to listen on, besides the ipc socket in the data "
        "directory (default: bus.endpoints, i.e. $TASKBUS_ENDPOINT or tcp://127.0.0.1:7420); "
        "repeatable",
    )
    up.set_defaults(func=_up)

    actor = commands.add_parser("actor", help="run one actor as its own process")
    actor.add_argument(
        "spec",
        help="a built-in actor (health, store, scheduler, executor-<category>) or module:Class",
    )
    actor.add_argument(
        "--connect",
        required=True,
        metavar="ENDPOINT",
        help="the broker's tcp:// or ipc:// endpoint",
    )
    actor.add_argument(
        "--identity",
        default=None,
        help="bus identity (default: the actor's name); its keypair must be in "
        "the keys directory's identities/ and allowed by the broker",
    )
    actor.set_defaults(func=_actor)

    keys = commands.add_parser("keys", help="manage CurveZMQ keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    init = key_commands.add_parser("init", help="create the broker keypair and a client identity")
    init.add_argument("--identity", default="cli", help="client identity to create (default cli)")
    init.set_defaults(func=_keys_init)
    allow = key_commands.add_parser("allow", help="admit a client by its public key file")
    allow.add_argument("public_key_file", type=Path)
    allow.add_argument(
        "--identity",
        default=None,
        help="identity to admit it as (default: the file name without .key)",
    )
    allow.set_defaults(func=_keys_allow)
    new = key_commands.add_parser(
        "new", help="create a client keypair only (on a host that joins a broker elsewhere)"
    )
    new.add_argument("identity")
    new.set_defaults(func=_keys_new)
    broker = key_commands.add_parser(
        "broker", help="trust a broker's public key file (on a host that joins it)"
    )
    broker.add_argument("public_key_file", type=Path)
    broker.set_defaults(func=_keys_broker)
    listing = key_commands.add_parser("list", help="list admitted identities")
    listing.set_defaults(func=_keys_list)

    cli_tasks.add_commands(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    """Defaults < config file < TASKBUS_* environment < these command-line options."""
    overrides: dict[str, object] = {}
    if args.home is not None:
        overrides["paths.data_dir"] = str(args.home.expanduser().resolve())
    if args.log_level is not None:
        overrides["log_level"] = args.log_level
    if getattr(args, "endpoint", None):
        overrides["bus.endpoints"] = list(args.endpoint)
    return load_settings(args.config, overrides=overrides)


def _keys(args: argparse.Namespace) -> KeysDirectory:
    settings: Settings = args.settings
    return KeysDirectory(settings.paths.keys_dir)


def _first_run(args: argparse.Namespace) -> KeysDirectory:
    keys, created = prepare_home(args.settings)
    if created:
        print(f"taskbus: created CurveZMQ keys in {keys.root}", file=sys.stderr)
    return keys


def _up(args: argparse.Namespace) -> int:
    report = asyncio.run(run_system(args.settings))
    return 0 if report.clean else EXIT_UNCLEAN


def _actor(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    report = asyncio.run(
        run_one_actor(args.spec, args.connect, _keys(args), settings, identity=args.identity)
    )
    return 0 if report.clean else EXIT_UNCLEAN


def _keys_init(args: argparse.Namespace) -> int:
    keys = _first_run(args)
    identity = check_identity(args.identity)
    keys.identity_keypair(identity, create=True)
    print(f"broker public key: {keys.server_dir / 'broker.key'}")
    print(f"identity {identity}: {keys.identities_dir / (identity + '.key_secret')}")
    return 0


def _keys_new(args: argparse.Namespace) -> int:
    keys = _keys(args)
    identity = check_identity(args.identity)
    keys.identity_keypair(identity, create=True, allow=False)
    public = keys.identities_dir / f"{identity}.key"
    print(
        f"identity {identity}: copy {public} to the broker's host and run "
        f"'taskbus keys allow {public.name}' there"
    )
    return 0


def _keys_broker(args: argparse.Namespace) -> int:
    keys = _keys(args)
    path = keys.trust_broker(load_public_key(args.public_key_file))
    print(f"trusting broker key {path}")
    return 0


def _keys_allow(args: argparse.Namespace) -> int:
    keys = _keys(args)
    identity = check_identity(args.identity or args.public_key_file.name.removesuffix(".key"))
    path = keys.allow(identity, load_public_key(args.public_key_file))
    print(f"allowed {identity}: {path}")
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    keys = _keys(args)
    allowed = keys.allowed()
    if not allowed:
        print("no identities allowed yet (run 'taskbus keys init')")
    for public, identity in sorted(allowed.items(), key=lambda item: item[1]):
        print(f"{identity:24} {public.decode('ascii')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
