"""Debian's nginx serving the published folder with the documented configuration
(docs/deploy/nginx-jtca-lists.conf, VERBATIM but for the folder and the port), run as a
non-daemon child on a free loopback port: the same bytes, ETag (SM3), Last-Modified and
Expires as the service, 304s on If-None-Match and If-Modified-Since, archived versions
immutable; after a publication nginx keeps serving the previous version whole, with its own
headers, until it is reloaded, and then the new one (issue #16, point 1)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest
from service_fixtures import in_process
from test_lists_http import newest, publish_again, seed_demo

from ca.lists.asn1 import ListType
from ca.store.models import ListVersion
from hsm.sm.sm3 import sm3

DOCUMENTED = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "nginx-jtca-lists.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
FOLDER = "/var/lib/jtca/published"
LISTEN = "127.0.0.1:8080"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str], int, Path]]:
    """The demo's state and nginx over its published folder: (state, shares, port, prefix)."""
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: scripts/bootstrap installs Debian's nginx")
    base = tmp_path_factory.mktemp("lists-nginx")
    state = base / "state"
    shares = seed_demo(state)
    prefix = base / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    port = free_port()
    documented = DOCUMENTED.read_text(encoding="utf-8")
    assert documented.count(LISTEN) == 1
    site = documented.replace(FOLDER, str(state / "published")).replace(LISTEN, f"127.0.0.1:{port}")
    (prefix / "jtca-lists.conf").write_text(site, encoding="utf-8")
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers read the 0700 state folder
    (prefix / "nginx.conf").write_text(
        f"{user}worker_processes 1;\nevents {{ worker_connections 64; }}\nhttp {{\n"
        "    access_log off;\n"
        "    client_body_temp_path tmp/body; proxy_temp_path tmp/proxy;\n"
        "    fastcgi_temp_path tmp/fastcgi; uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;\n"
        "    include jtca-lists.conf;   # as /etc/nginx/conf.d/ would\n"
        "}\n",
        encoding="utf-8",
    )
    command = [
        NGINX, "-p", str(prefix), "-c", "nginx.conf",
        "-g", f"daemon off; pid {prefix}/nginx.pid; error_log stderr;",
    ]  # fmt: skip
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            if answers(port) or server.poll() is not None:
                break
            time.sleep(0.05)
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        yield state, shares, port, prefix
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def get(port: int, path: str, **headers: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=10)


def test_nginx_sends_the_services_headers_and_304s(world) -> None:  # type: ignore[no-untyped-def]
    state, _, port, _ = world
    with in_process(state, seal=False) as (client, runtime):
        for list_type in ListType:
            row = newest(runtime, list_type)
            url = f"/lists/{list_type.value}"
            ours = get(port, url)
            theirs = client.http.get(url)
            assert ours.status_code == 200
            assert ours.content == theirs.content
            assert sm3(ours.content).hex() == row.sm3
            for name in ("etag", "last-modified", "expires", "content-type"):
                assert ours.headers[name] == theirs.headers[name], name
            assert ours.headers["etag"] == f'"{row.sm3}"'
            assert ours.headers["last-modified"] == formatdate(row.this_update, usegmt=True)
            assert ours.headers["expires"] == formatdate(row.next_update, usegmt=True)
            max_age = int(ours.headers["cache-control"].removeprefix("max-age="))
            assert 0 < max_age <= row.next_update - row.this_update
            tag = ours.headers["etag"]
            for inm in (tag, f"W/{tag}", f'"{"0" * 64}", {tag}', "*"):
                not_modified = get(port, url, **{"If-None-Match": inm})
                assert not_modified.status_code == 304, inm
                assert not_modified.headers["etag"] == tag
                assert not_modified.headers["expires"] == ours.headers["expires"]
            assert get(port, url, **{"If-None-Match": '"' + "0" * 64 + '"'}).status_code == 200
            since = get(port, url, **{"If-Modified-Since": ours.headers["last-modified"]})
            assert since.status_code == 304
            assert since.headers["etag"] == tag
            earlier = formatdate(row.this_update - 1, usegmt=True)
            assert get(port, url, **{"If-Modified-Since": earlier}).status_code == 200
            archived = get(port, f"{url}/{row.sequence}")
            assert archived.status_code == 200
            assert archived.content == ours.content
            assert archived.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert archived.headers["etag"] == tag
            assert get(port, f"{url}/{row.sequence}", **{"If-None-Match": tag}).status_code == 304
            index = get(port, f"{url}/index.json")
            assert index.status_code == 200
            assert index.content == client.http.get(f"{url}/index.json").content
            assert index.json()["current"] == row.sequence
            assert get(port, f"{url}/{row.sequence + 1}").status_code == 404
        for path in ("/lists/white-list", "/lists/", "/lists/nginx-lists.conf", "/jtca.db"):
            assert get(port, path).status_code == 404, path


def test_a_publication_is_served_after_the_reload(world) -> None:  # type: ignore[no-untyped-def]
    state, shares, port, prefix = world
    with in_process(state, seal=False) as (_, runtime):
        before = newest(runtime, ListType.CITIES)
        time.sleep(1.1)  # the next second: a version needs a thisUpdate after the last one
        outcomes = publish_again(runtime, shares, int(time.time()))
        assert {o.action for o in outcomes} == {"published"}
        after = newest(runtime, ListType.CITIES)
        _check_before_reload(port, before)
        master = int((prefix / "nginx.pid").read_text(encoding="ascii").strip())
        os.kill(master, signal.SIGHUP)
        _wait_for_etag(port, f'"{after.sm3}"')
        new = get(port, "/lists/city-list", **{"If-None-Match": f'"{before.sm3}"'})
        assert new.status_code == 200
        assert sm3(new.content).hex() == after.sm3
        assert new.headers["last-modified"] == formatdate(after.this_update, usegmt=True)
        assert new.headers["expires"] == formatdate(after.next_update, usegmt=True)
        old = get(port, f"/lists/city-list/{before.sequence}")
        assert sm3(old.content).hex() == before.sm3
        assert get(port, f"/lists/city-list/{after.sequence}").status_code == 200


def _check_before_reload(port: int, before: ListVersion) -> None:
    """Until nginx reloads its map it serves the previous version whole, with its headers."""
    sm3_hex = before.sm3
    current = get(port, "/lists/city-list")
    assert current.headers["etag"] == f'"{sm3_hex}"'
    assert sm3(current.content).hex() == sm3_hex
    assert get(port, "/lists/city-list", **{"If-None-Match": f'"{sm3_hex}"'}).status_code == 304


def _wait_for_etag(port: int, tag: str) -> None:
    for _ in range(400):  # the new workers take over; the old ones finish and leave
        if get(port, "/lists/city-list").headers.get("etag") == tag:
            return
        time.sleep(0.05)
    raise AssertionError(f"nginx did not serve {tag} after the reload")
