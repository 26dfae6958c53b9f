"""Defaults, typed settings and their validation. Imports nothing else of taskbus."""

from config.bus import AclRule, BusSettings, default_acl
from config.errors import ConfigError, TaskbusError

__all__ = ["AclRule", "BusSettings", "ConfigError", "TaskbusError", "default_acl"]
