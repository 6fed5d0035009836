"""Small in-process caches for the expensive reads, keyed so that they never serve stale
data they should not: a parcel profile by the imagery ledger's state (any processed scene
changes the key), a farm's headcount "now" for a few seconds."""

import json
import logging
import threading
import time
from collections import OrderedDict

from fastapi.responses import Response

JSON = "application/json"
log = logging.getLogger("agri.api")


class Cache:
    """An LRU of serialized JSON bodies with an optional time to live.

    With ``stale_s``, an entry past its ``ttl_s`` but younger than ``stale_s`` is still
    answered while one background thread computes its successor: a busy key never makes
    its callers wait for a recomputation (a farm's headcount takes ~150 ms, and every
    request behind it waited that long once per ``ttl_s``).
    """

    def __init__(self, size: int = 512, ttl_s: float | None = None, stale_s: float | None = None):
        self.size, self.ttl_s, self.stale_s = size, ttl_s, stale_s
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._flights: dict = {}  # key -> the lock of the computation under way
        self._refreshing: set = set()  # keys being recomputed in the background
        # One background recomputation at a time: entries made together expire together,
        # and several threads at once contend with the requests for the interpreter lock.
        self._one_refresh = threading.Lock()

    def response(self, key, compute) -> Response:
        """The cached body for ``key``, or ``compute()`` serialized once and kept. Callers
        that miss together wait for one computation instead of each doing it."""
        body, age = self._get(key)
        if body is not None and self.ttl_s is not None and age >= self.ttl_s:
            if self.stale_s is not None and age < self.stale_s:
                self._refresh_in_background(key, compute)
            else:
                body = None
        if body is None:
            with self._lock:
                flight = self._flights.setdefault(key, threading.Lock())
            with flight:
                body, age = self._get(key)
                if body is None or (self.ttl_s is not None and age >= self.ttl_s):
                    body = self._compute(key, compute)
            with self._lock:
                self._flights.pop(key, None)
        return Response(body, media_type=JSON)

    def _get(self, key) -> tuple[bytes | None, float]:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None, 0.0
            self._items.move_to_end(key)
            return hit[1], time.monotonic() - hit[0]

    def _compute(self, key, compute) -> bytes:
        body = json.dumps(compute()).encode()
        with self._lock:
            self._items[key] = (time.monotonic(), body)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return body

    def _refresh_in_background(self, key, compute) -> None:
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def refresh() -> None:
            try:
                with self._one_refresh:
                    self._compute(key, compute)
            except Exception:  # the stale entry stays until stale_s; then callers see the error
                log.exception("refreshing the cached %r failed", key)
            finally:
                with self._lock:
                    self._refreshing.discard(key)

        threading.Thread(target=refresh, name="cache-refresh", daemon=True).start()
