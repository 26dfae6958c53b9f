"""Topic names: dotted lowercase words, matched by raw prefix."""

from __future__ import annotations

import re

from bus.errors import EnvelopeError

MAX_TOPIC_LENGTH = 255
_TOPIC = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_-]+)*$")
_PREFIX = re.compile(r"^([a-z0-9_]+(\.[a-z0-9_-]+)*\.?)?$")


def check_topic(topic: str) -> None:
    if len(topic) > MAX_TOPIC_LENGTH:
        raise EnvelopeError("topic", f"topic of {len(topic)} characters exceeds {MAX_TOPIC_LENGTH}")
    if not _TOPIC.match(topic):
        raise EnvelopeError(
            "topic", f"topic {topic!r} is not dotted lowercase words (e.g. 'scheduler.task.create')"
        )


def check_prefix(prefix: str) -> None:
    """A subscription prefix: a topic, a topic with a trailing dot, or '' for everything."""
    if len(prefix) > MAX_TOPIC_LENGTH or not _PREFIX.match(prefix):
        raise EnvelopeError("topic", f"prefix {prefix!r} is not a dotted topic prefix")
