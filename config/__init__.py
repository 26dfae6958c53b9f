"""Defaults, typed settings and their validation. Imports nothing else of taskbus."""

from config.actors import ActorSettings
from config.bus import AclRule, BusSettings, default_acl
from config.errors import ConfigError, TaskbusError
from config.loader import load_settings
from config.sections import (
    CATEGORIES,
    CategorySettings,
    PathSettings,
    ResourceSettings,
    SchedulerSettings,
    TaskOverride,
)
from config.settings import Settings

__all__ = [
    "CATEGORIES",
    "AclRule",
    "ActorSettings",
    "BusSettings",
    "CategorySettings",
    "ConfigError",
    "PathSettings",
    "ResourceSettings",
    "SchedulerSettings",
    "Settings",
    "TaskOverride",
    "TaskbusError",
    "default_acl",
    "load_settings",
]
