"""A real HTTP server for imagery over HTTP: Debian's nginx on a free loopback port.

It serves a folder as a catalogue's object store does (Range requests answered with 206,
HEAD, byte-exact), logs every request with its status, range and bytes sent (what a
benchmark or a test counts), answers 500 below ``/fail/`` (a broken object store), and
serves the same folder below ``/busy/`` at 4 requests a second, answering 503 to the
rest (an overloaded one: a client that retries gets everything). ``/copies/N/PATH``
serves PATH under as many URLs as needed (scenes that must not share a reader's cache).
``/eodata/PATH`` serves PATH as an S3 bucket named ``eodata`` does to a path-style
client (GDAL's /vsis3/ with AWS_VIRTUAL_HOSTING=FALSE); nginx does not check the request's
signature, the log keeps its Authorization header. A request for an absolute URL on any
host (a client using it as its HTTP proxy) is served from the same folder, its host logged.
Python's http.server does not do ranges, so it is not used for this.
"""

import getpass
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from telemetry.local_broker import free_port
from tests.support.processes import stop
from tests.support.waiting import wait_for

NGINX_CANDIDATES = ("/usr/sbin/nginx", "nginx")


@dataclass(frozen=True)
class Request:
    status: int
    bytes_sent: int
    range: str  # the Range header, "-" when none
    path: str
    agent: str  # the User-Agent header
    query: str  # the query string, "-" when none
    host: str  # the host the request named
    authorization: str  # the Authorization header, "-" when none


@dataclass(frozen=True)
class RangeServer:
    base_url: str  # http://127.0.0.1:PORT
    root: Path
    access_log: Path

    def url(self, relative: str) -> str:
        return f"{self.base_url}/{relative.lstrip('/')}"

    def requests(self) -> list[Request]:
        """Every request logged so far, in order."""
        out = []
        if not self.access_log.exists():
            return out
        for line in self.access_log.read_text().splitlines():
            status, sent, range_, path, agent, query, host, authorization = line.split("\t")
            out.append(
                Request(int(status), int(sent), range_, path, agent, query, host, authorization)
            )
        return out


def nginx_binary() -> str:
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise RuntimeError("nginx is not installed: run `make system-deps`")


@contextmanager
def range_server(root: Path, workdir: Path, rate: str | None = None) -> Iterator[RangeServer]:
    """nginx serving ``root`` until the block ends; its config and logs in ``workdir``.
    ``rate`` (nginx's ``limit_rate``, e.g. ``10m``: bytes a second) limits each connection,
    as a slow link to a far object store would."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "access.log"
    log.unlink(missing_ok=True)  # a new server, a new log (in a workdir used before)
    conf = workdir / "nginx.conf"
    temp = workdir / "temp"
    temp.mkdir(exist_ok=True)
    user = getpass.getuser()
    conf.write_text(
        f"""
daemon off;
worker_processes 1;
{"user root;" if user == "root" else ""}
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
    log_format ranges '$status\\t$body_bytes_sent\\t$http_range\\t$uri\\t$http_user_agent'
                      '\\t$args\\t$host\\t$http_authorization';
    access_log {log} ranges;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    types {{ image/tiff tif tiff; application/json json; }}
    default_type application/octet-stream;
    keepalive_requests 10000;
    limit_req_zone $server_port zone=busy:1m rate=4r/s;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        {f"limit_rate {rate};" if rate else ""}
        location /fail/ {{ return 500; }}
        location /busy/ {{ limit_req zone=busy; alias {root}/; }}
        location ~ ^/copies/[0-9]+/(.*)$ {{ alias {root}/$1; }}
        location /eodata/ {{ alias {root}/; }}
        location / {{ }}
    }}
}}
"""
    )
    process = subprocess.Popen(
        [nginx_binary(), "-c", str(conf), "-p", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = RangeServer(f"http://127.0.0.1:{port}", root, log)
    try:
        if not wait_for(lambda: _answers(port) or process.poll() is not None, timeout=15):
            raise RuntimeError("nginx did not start")
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {process.stderr.read().decode()[-2000:]}")
        yield server
    finally:
        stop(process)


def _answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
