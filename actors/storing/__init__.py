"""The store on the bus: ``StoreActor`` serves a :class:`store.Store` as ``store.*`` requests, and
``StoreClient`` is the typed client the scheduler and the executors call it through.

The wire between them: ``requests`` (the serving side's readers, built on ``fields``, the strict
field parsers the scheduler reads its own requests with too), ``client`` (the asking side) and
``wire`` (records as maps and back, errors as codes and back).
"""

from actors.storing.actor import StoreActor
from actors.storing.client import RecordedFire, RekeyReport, StoreClient

__all__ = ["RecordedFire", "RekeyReport", "StoreActor", "StoreClient"]
