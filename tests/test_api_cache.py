"""The API's read caches: one computation for callers that miss together, expiry, LRU."""

import threading
import time

from collateral.api.cache import Cache


def test_callers_that_miss_together_share_one_computation():
    cache, calls = Cache(ttl_s=60), []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return {"n": len(calls)}

    threads = [threading.Thread(target=cache.response, args=("k", slow)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert cache.response("k", slow).body == b'{"n": 1}'


def test_entries_expire_and_the_oldest_go_first():
    cache = Cache(size=2, ttl_s=0.1)
    assert cache.response("a", lambda: 1).body == b"1"
    assert cache.response("a", lambda: 2).body == b"1"  # fresh: kept
    time.sleep(0.15)
    assert cache.response("a", lambda: 3).body == b"3"  # expired: recomputed
    cache.response("b", lambda: 4)
    cache.response("c", lambda: 5)  # "a" is the least recently used: dropped
    assert cache.response("a", lambda: 6).body == b"6"
