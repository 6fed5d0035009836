"""Helpers the tests (and the benchmarks) share: real services started on free loopback
ports, sample data, readiness waits. Test modules import from here, never from each
other or from conftest."""
