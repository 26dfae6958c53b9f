"""``taskbus keys ...``: the CurveZMQ keys of the data directory (bus.KeysDirectory)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from bus import KeysDirectory, load_public_key
from bus.keys import check_identity
from config import Settings
from taskbus.embedding import prepare_home
from taskbus.http.tokens import TokenBook


def directory(args: argparse.Namespace) -> KeysDirectory:
    """The keys directory of the settings in ``args``."""
    settings: Settings = args.settings
    return KeysDirectory(settings.paths.keys_dir)


def init(args: argparse.Namespace) -> int:
    keys, created = prepare_home(args.settings)
    if created:
        print(f"taskbus: created CurveZMQ keys in {keys.root}", file=sys.stderr)
    identity = check_identity(args.identity)
    keys.identity_keypair(identity, create=True)
    print(f"broker public key: {keys.server_dir / 'broker.key'}")
    print(f"identity {identity}: {keys.identities_dir / (identity + '.key_secret')}")
    return 0


def new(args: argparse.Namespace) -> int:
    keys = directory(args)
    identity = check_identity(args.identity)
    keys.identity_keypair(identity, create=True, allow=False)
    public = keys.identities_dir / f"{identity}.key"
    print(
        f"identity {identity}: copy {public} to the broker's host and run "
        f"'taskbus keys allow {public.name}' there"
    )
    return 0


def broker(args: argparse.Namespace) -> int:
    path = directory(args).trust_broker(load_public_key(args.public_key_file))
    print(f"trusting broker key {path}")
    return 0


def allow(args: argparse.Namespace) -> int:
    identity = check_identity(args.identity or args.public_key_file.name.removesuffix(".key"))
    path = directory(args).allow(identity, load_public_key(args.public_key_file))
    print(f"allowed {identity}: {path}")
    return 0


def listing(args: argparse.Namespace) -> int:
    keys = directory(args)
    allowed = keys.allowed()
    if not allowed:
        print("no identities allowed yet (run 'taskbus keys init')")
    tokens = Counter(entry.identity for entry in TokenBook(keys).entries())
    for public, identity in sorted(allowed.items(), key=lambda item: item[1]):
        count = tokens.pop(identity, 0)
        held = f"  {count} http token{'s' if count > 1 else ''}" if count else ""
        print(f"{identity:24} {public.decode('ascii')}{held}")
    for identity, count in sorted(tokens.items()):  # tokens of an identity no longer admitted
        print(f"{identity:24} (not allowed)  {count} http token{'s' if count > 1 else ''}")
    return 0


def token(args: argparse.Namespace) -> int:
    """Issues a token (printed alone on the last line) or, with ``--revoke``, revokes them."""
    book = TokenBook(directory(args))
    identity = check_identity(args.identity)
    if args.revoke:
        count = book.revoke(identity)
        print(f"revoked {count} token{'' if count == 1 else 's'} of {identity}")
        return 0
    issued = book.issue(identity)
    print(
        f"http token of {identity} (shown once; stored hashed in {book.path}; revoke with "
        f"'taskbus keys token --revoke {identity}'):",
        file=sys.stderr,
    )
    print(issued.token)
    return 0
