"""Media downloads connect only to public addresses: the name is checked, then the address.

An allow-listed host name can still be pointed at an internal address by its DNS (rebinding),
and an address literal never reaches a resolver; both are refused before a byte is sent, unless
the host is the operator's own configured API host.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from channels.base import SendError
from channels.download import PublicOnlyResolver, download, public_address


@pytest.mark.parametrize(("ip", "public"), [
    ("127.0.0.1", False), ("10.1.2.3", False), ("192.168.1.10", False), ("172.16.0.5", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("::1", False),
    ("fe80::1", False), ("fd00::1", False), ("224.0.0.1", False), ("not an ip", False),
    ("8.8.8.8", True), ("1.1.1.1", True), ("2001:4860:4860::8888", True),
])
def test_public_address(ip: str, public: bool) -> None:
    assert public_address(ip) is public


async def test_the_resolver_drops_internal_answers() -> None:
    resolver = PublicOnlyResolver()
    try:
        with pytest.raises(OSError, match="no public address"):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()
    trusting = PublicOnlyResolver(trusted=["localhost"])
    try:
        answers = await trusting.resolve("localhost", 80)
        assert answers and all(not public_address(str(a["host"])) for a in answers)
    finally:
        await trusting.close()


@pytest.fixture
async def internal(aiohttp_server: Any) -> Any:
    """A server on loopback that counts what reaches it."""
    hits: list[str] = []

    async def media(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"\xff\xd8\xff\xe0secret", content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/{tail:.*}", media)
    server = await aiohttp_server(app)
    server.hits = hits
    return server


async def test_a_name_that_resolves_inside_is_refused(internal: Any) -> None:
    url = f"http://localhost:{internal.port}/photo.jpg"  # the name passes; its address does not
    with pytest.raises(SendError) as info:
        await download(None, url, 10_000, allowed=lambda _u, _h: True)
    assert info.value.code == "media_host" and not info.value.retryable
    assert internal.hits == []


async def test_an_address_literal_inside_is_refused(internal: Any) -> None:
    url = f"http://127.0.0.1:{internal.port}/photo.jpg"
    with pytest.raises(SendError) as info:
        await download(None, url, 10_000, allowed=lambda _u, _h: True)
    assert info.value.code == "media_host"
    assert internal.hits == []


async def test_the_configured_api_host_may_be_internal(internal: Any) -> None:
    url = f"http://localhost:{internal.port}/photo.jpg"
    data, mime = await download(None, url, 10_000, allowed=lambda _u, _h: True,
                                trusted_hosts=[f"localhost:{internal.port}"])
    assert data.startswith(b"\xff\xd8") and mime == "image/jpeg"
    assert internal.hits == ["/photo.jpg"]
