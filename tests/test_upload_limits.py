"""Uploads cannot take the API process down: a body past the limit is refused from its
Content-Length before a byte is read, and a chunked one as soon as what was read passes the
limit; hostile plot files (a zip bomb, a billion-laughs KML, a KML with an external entity)
are refused cleanly. Each against a real `agri serve` process, whose own peak memory
(VmHWM) must stay flat."""

import io
import select
import socket
import zipfile

import httpx2
import pytest

from collateral import auth
from collateral.db import make_engine, upgrade
from tests.support.api_server import peak_mb, start_servers, stop_servers

pytestmark = pytest.mark.slow
MB = 1 << 20
KML = "application/vnd.google-earth.kml+xml"
CLAIM = "/v1/claims?kind=tea_garden&crs=wgs84"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uploads")
    url = f"sqlite:///{folder / 'agri.db'}"
    engine = make_engine(url)
    upgrade(engine)
    key = auth.create_key(engine, "loan_officer", "ANXI-01")
    engine.dispose()
    servers, (base,) = start_servers(url, folder / "data")
    yield servers[0], base, key
    stop_servers(servers)


def _send(base: str, key: str, total: int, chunked: bool) -> tuple[int, bytes]:
    """POST ``total`` bytes of a KML body over a raw socket (a client that keeps sending
    while the server has answered); (status, response bytes)."""
    host, port = base.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=30)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    conn.sendall(
        f"POST {CLAIM} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: {KML}\r\n{framing}\r\n\r\n".encode()
    )
    block = b"<" * MB
    sent = 0
    try:
        while sent < total and not select.select([conn], [], [], 0)[0]:
            conn.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block)
            sent += len(block)
        if chunked and sent >= total:
            conn.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed while we were still sending
    answer = b""
    while b"\r\n\r\n" not in answer:
        part = conn.recv(65536)
        if not part:
            break
        answer += part
    while True:  # the problem document after the headers
        conn.settimeout(2)
        try:
            part = conn.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not part:
            break
        answer += part
    conn.close()
    assert sent < total, "the server read the whole body"
    return int(answer.split(b" ", 2)[1]), answer


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_300_mb_upload_is_refused_with_flat_memory(server, chunked):
    process, base, key = server
    assert httpx2.get(base + "/v1/health").status_code == 200
    before = peak_mb(process)
    status, answer = _send(base, key, 300 * MB, chunked)
    assert status == 422 and b"beyond the 20,971,520 allowed" in answer, answer[-400:]
    assert peak_mb(process) - before < 80, (before, peak_mb(process))
    assert httpx2.get(base + "/v1/health").status_code == 200  # and it still serves


def _zip_bomb() -> bytes:
    """A KMZ of 1 MB holding a 1 GiB KML (zeros after a KML header)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("doc.kml", "w", force_zip64=True) as entry:
            entry.write(b'<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2">')
            zeros = b"\0" * (16 * MB)
            for _ in range(64):
                entry.write(zeros)
    return out.getvalue()


LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE kml ['
    + '<!ENTITY a0 "hahahahahahahahahaha">'
    + "".join(f'<!ENTITY a{k} "{f"&a{k - 1};" * 10}">' for k in range(1, 10))
    + ']><kml xmlns="http://www.opengis.net/kml/2.2"><Placemark><name>&a9;</name>'
    + "<Polygon><outerBoundaryIs><LinearRing><coordinates>"
    + "118,25 118.001,25 118.001,25.001 118,25"
    + "</coordinates></LinearRing></outerBoundaryIs></Polygon></Placemark></kml>"
).encode()

XXE = (
    b'<?xml version="1.0"?><!DOCTYPE kml [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
    b'<kml xmlns="http://www.opengis.net/kml/2.2"><Placemark><name>&secret;</name>'
    b"<Polygon><outerBoundaryIs><LinearRing><coordinates>"
    b"118,25 118.001,25 118.001,25.001 118,25"
    b"</coordinates></LinearRing></outerBoundaryIs></Polygon></Placemark></kml>"
)


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (_zip_bomb, "application/vnd.google-earth.kmz", "unpacks to 1,073,741,"),
        (lambda: LAUGHS, KML, "not a readable KML file"),
        (lambda: XXE, KML, "not a readable KML file"),
    ],
    ids=["zip-bomb", "billion-laughs", "external-entity"],
)
def test_hostile_plot_files_are_refused_cleanly(server, body, content_type, reason):
    process, base, key = server
    data = body()
    assert len(data) < 20 * MB
    before = peak_mb(process)
    response = httpx2.post(
        base + CLAIM,
        content=data,
        headers={"Authorization": f"Bearer {key}", "content-type": content_type},
        timeout=120,
    )
    assert response.status_code == 422, response.text[:400]
    assert reason in response.json()["detail"] and "/tmp" not in response.text
    assert "root:" not in response.text  # nothing of the named file comes back
    assert peak_mb(process) - before < 150, (before, peak_mb(process))
    assert httpx2.get(base + "/v1/health").status_code == 200
