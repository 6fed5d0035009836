"""The API's read caches: one computation for callers that miss together, expiry, LRU."""

import threading
import time

import pytest

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


def test_an_expired_entry_is_answered_while_one_background_refresh_runs():
    cache, calls = Cache(ttl_s=0.1, stale_s=30), []
    cache.response("k", lambda: 1)
    time.sleep(0.15)
    started, release = threading.Event(), threading.Event()

    def slow():
        calls.append(1)
        started.set()
        release.wait(5)
        return 2

    began = time.perf_counter()
    assert cache.response("k", slow).body == b"1"  # the previous body, at once
    assert started.wait(2)
    assert cache.response("k", slow).body == b"1"  # the refresh under way is not repeated
    assert time.perf_counter() - began < 1
    release.set()
    deadline = time.monotonic() + 5
    while cache.response("k", slow).body != b"2" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.response("k", slow).body == b"2" and calls == [1]


def test_a_failed_refresh_keeps_the_entry_until_it_is_too_old():
    cache = Cache(ttl_s=0.05, stale_s=0.3)
    cache.response("k", lambda: 1)
    time.sleep(0.1)

    def broken():
        raise RuntimeError("database down")

    assert cache.response("k", broken).body == b"1"
    time.sleep(0.3)  # past stale_s: the caller computes, and sees the error
    with pytest.raises(RuntimeError, match="database down"):
        cache.response("k", broken)
