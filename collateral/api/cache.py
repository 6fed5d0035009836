"""Small in-process caches for the expensive reads, keyed so that they never serve stale
data they should not: a parcel profile by the imagery ledger's state (any processed scene
changes the key), a farm's headcount "now" for a few seconds."""

import json
import threading
import time
from collections import OrderedDict

from fastapi.responses import Response

JSON = "application/json"


class Cache:
    """An LRU of serialized JSON bodies with an optional time to live."""

    def __init__(self, size: int = 512, ttl_s: float | None = None):
        self.size, self.ttl_s = size, ttl_s
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._flights: dict = {}  # key -> the lock of the computation under way

    def response(self, key, compute) -> Response:
        """The cached body for ``key``, or ``compute()`` serialized once and kept. Callers
        that miss together wait for one computation instead of each doing it."""
        body = self._fresh(key)
        if body is None:
            with self._lock:
                flight = self._flights.setdefault(key, threading.Lock())
            with flight:
                body = self._fresh(key)
                if body is None:
                    body = json.dumps(compute()).encode()
                    with self._lock:
                        self._items[key] = (time.monotonic(), body)
                        self._items.move_to_end(key)
                        while len(self._items) > self.size:
                            self._items.popitem(last=False)
            with self._lock:
                self._flights.pop(key, None)
        return Response(body, media_type=JSON)

    def _fresh(self, key) -> bytes | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is None or (self.ttl_s is not None and time.monotonic() - hit[0] >= self.ttl_s):
                return None
            self._items.move_to_end(key)
            return hit[1]
