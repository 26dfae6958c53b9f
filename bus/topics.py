"""Topic names: dotted lowercase words, matched by raw prefix."""

from __future__ import annotations

import re

from bus.errors import EnvelopeError

MAX_TOPIC_LENGTH = 255
_TOPIC = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_-]+)*$")
_PREFIX = re.compile(r"^([a-z0-9_]+(\.[a-z0-9_-]+)*\.?)?$")


_known_topics: set[str] = set()
_KNOWN_TOPICS_LIMIT = 100_000


def is_valid_topic(topic: str) -> bool:
    """Cached: the same few topics are checked for every message."""
    if topic in _known_topics:
        return True
    if len(topic) > MAX_TOPIC_LENGTH or not _TOPIC.fullmatch(topic):
        return False
    if len(_known_topics) >= _KNOWN_TOPICS_LIMIT:
        _known_topics.clear()
    _known_topics.add(topic)
    return True


def check_topic(topic: str) -> None:
    if is_valid_topic(topic):
        return
    if len(topic) > MAX_TOPIC_LENGTH:
        raise EnvelopeError("topic", f"topic of {len(topic)} characters exceeds {MAX_TOPIC_LENGTH}")
    raise EnvelopeError(
        "topic", f"topic {topic!r} is not dotted lowercase words (e.g. 'scheduler.task.create')"
    )


def check_prefix(prefix: str) -> None:
    """A subscription prefix: a topic, a topic with a trailing dot, or '' for everything."""
    if len(prefix) > MAX_TOPIC_LENGTH or not _PREFIX.fullmatch(prefix):
        raise EnvelopeError("topic", f"prefix {prefix!r} is not a dotted topic prefix")
