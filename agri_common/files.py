"""Writing a file so that no reader ever sees it half-written.

Every writer of a file that others read (COGs, coverage caches, overlays, the broker's
password file) goes through ``atomic_path``: the content is written to a hidden temporary
file beside the target, then renamed into place, which POSIX makes atomic. A writer that
dies leaves only its hidden ``.NAME.HOST-PID.*.tmp`` file, which ``sweep_stale`` removes:
at once when that process is known dead (same host, no such process), otherwise once it
has not been touched for a while (a writer on another machine of a shared data directory
cannot be asked).
"""

import contextlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_path(path: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, rename
    it into place (with ``mode`` as its permissions, if given); on error remove it and
    leave ``path`` untouched. Concurrent writers each rename a complete file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.{socket.gethostname()}-{os.getpid()}."
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, write: Callable[[BinaryIO], object], mode: int | None = None) -> None:
    """Call ``write`` on an open binary file that becomes ``path`` only once complete."""
    with atomic_path(path, mode) as tmp, open(tmp, "wb") as f:
        write(f)


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> None:
    """``atomic_write`` for a UTF-8 text."""
    atomic_write(path, lambda f: f.write(text.encode()), mode)


def sweep_stale(path: Path, older_than_s: float) -> None:
    """Remove temporary files of earlier writes of ``path`` that died, never renamed into
    place: those of a process of this host that no longer runs, and any untouched for
    ``older_than_s`` (a live write keeps touching its file)."""
    path = Path(path)
    now = time.time()
    host = socket.gethostname()
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        writer = _WRITER.match(stale.name[len(path.name) + 2 :])
        dead = writer is not None and writer["host"] == host and not _alive(int(writer["pid"]))
        with contextlib.suppress(OSError):
            if dead or now - stale.stat().st_mtime > older_than_s:
                stale.unlink()


_WRITER = re.compile(r"(?P<host>.+)-(?P<pid>\d+)\.[^.]+\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True
