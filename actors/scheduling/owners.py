"""Who may touch a task: its owner, the identity that created it, the admins, and taskbus's own
actors (an executor disables a task it quarantines).

Code-defined tasks belong to taskbus itself (``SYSTEM_OWNER``): only admins manage them. Admins
are the identities with the ``admin`` role (``bus.roles.admin``; ``cli`` and ``app`` by
default), taskbus's actors those with the ``internal`` role. A refusal names the requester and
the task, never the owner.
"""

from __future__ import annotations

from bus import Refused
from bus.acl import Roles
from config.bus import default_roles

SYSTEM_OWNER = "taskbus"
ADMIN_ROLE = "admin"
INTERNAL_ROLE = "internal"
EXECUTOR_ROLE = "executor"  # the identities whose results the scheduler takes


class Owners:
    def __init__(self, roles: Roles | None = None) -> None:
        self.roles = roles or Roles(default_roles())

    def is_admin(self, identity: str) -> bool:
        """An admin, or one of taskbus's own actors: it sees and manages every task."""
        return self.roles.has(ADMIN_ROLE, identity) or self.roles.has(INTERNAL_ROLE, identity)

    def may_manage(self, identity: str, owner: str) -> bool:
        return self.is_admin(identity) or (identity == owner and owner != SYSTEM_OWNER)

    def check(self, identity: str, owner: str, task_id: str, action: str) -> None:
        """Refused ``denied`` unless ``identity`` may ``action`` the task."""
        if not self.may_manage(identity, owner):
            raise Refused(
                "denied",
                f"{identity!r} may not {action} task {task_id!r}: a task is its owner's (the "
                "identity that created it) and the admins'",
            )


def events_owner(owner: str) -> str:
    """The word of a task's event topics that names its owner (tasks stored before owners were
    kept have none: theirs are taskbus's)."""
    return owner or SYSTEM_OWNER
