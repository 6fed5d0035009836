"""Long-running commands stop on SIGTERM whatever their main thread is doing."""

import signal
import subprocess
import sys
import textwrap

from tests.support.paths import REPO_ROOT

# The moment a gateway agent once hung at (its stack by SIGUSR1): the main thread inside
# the stop event's wait, its lock still held, when the handler ran. Here the handler is
# called at that moment on purpose, in a child, so a deadlock is a timeout.
WAITING_WHEN_SIGNALLED = textwrap.dedent(
    """
    import signal, sys
    from collateral.cli.context import stop_on_signals
    then = []
    stop = stop_on_signals("stopping", lambda: then.append(True))
    handler = signal.getsignal(signal.SIGTERM)
    with stop._cond:  # where Event.wait holds it, before it releases it to sleep
        handler(signal.SIGTERM, None)
    assert stop.wait(10), "the stop event was not set"
    sys.exit(0 if then else 3)
    """
)


def test_sigterm_during_the_stop_events_own_wait_stops_the_command():
    done = subprocess.run(
        [sys.executable, "-c", WAITING_WHEN_SIGNALLED],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "received SIGTERM, stopping" in done.stderr


def test_a_real_sigterm_stops_a_waiting_command():
    script = textwrap.dedent(
        """
        import sys, time
        from collateral.cli.context import stop_on_signals
        stop = stop_on_signals("stopping")
        print("ready", flush=True)
        while not stop.wait(0.001):  # the main thread in and out of the wait
            pass
        print("stopped", flush=True)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    for _ in range(20):  # many signals at random moments of the wait
        process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped" in out and "received SIGTERM, stopping" in err
