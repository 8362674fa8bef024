"""The fetcher's HTTP pools: requests go to the small pool with the fewest in flight."""

import asyncio

import httpx

from services.fetcher.client import ClientPools, new_http_client, new_http_pools


async def test_requests_go_to_the_pool_with_the_fewest_in_flight():
    release = asyncio.Event()
    served: list[str] = []

    def pool(name: str) -> httpx.AsyncClient:
        async def handler(request: httpx.Request) -> httpx.Response:
            served.append(name)
            await release.wait()
            return httpx.Response(200, text=name)

        return new_http_client(transport=httpx.MockTransport(handler))

    pools = ClientPools([pool("a"), pool("b"), pool("c")])
    requests = [asyncio.create_task(pools.get("http://hiscores/x")) for _ in range(6)]
    while len(served) < 6:
        await asyncio.sleep(0.01)
    assert sorted(served) == ["a", "a", "b", "b", "c", "c"]
    assert pools.in_flight == [2, 2, 2]
    release.set()
    assert sorted([(await r).text for r in requests]) == sorted(served)
    assert pools.in_flight == [0, 0, 0]
    await pools.aclose()


def test_connections_are_split_into_pools_of_about_four():
    assert [len(new_http_pools(max_connections=n).clients) for n in (1, 4, 8, 16, 18)] == [
        1,
        1,
        2,
        4,
        5,
    ]
