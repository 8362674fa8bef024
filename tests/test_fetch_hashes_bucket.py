"""The fetcher's hash bucket answers gets directly, also when it was created before that; a
bucket of an older release takes the TTL of this one."""

import nats
from nats.js.api import KeyValueConfig, StorageType

from shared import nats as natsx
from shared import subjects
from shared.settings import Settings


async def test_the_hash_bucket_is_declared_with_direct_gets(js):
    info = await js.stream_info(f"KV_{subjects.FETCH_HASHES_BUCKET}")
    assert info.config.allow_direct


async def test_an_older_hash_bucket_gets_direct_gets_and_keeps_its_hashes(nats_url):
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        old = await js.create_key_value(
            KeyValueConfig(bucket=subjects.FETCH_HASHES_BUCKET, history=1, storage=StorageType.FILE)
        )
        await old.put("regular.lynx_titan", b"0123")
        await natsx.declare(js, Settings(nats_url=nats_url))
        info = await js.stream_info(f"KV_{subjects.FETCH_HASHES_BUCKET}")
        assert info.config.allow_direct
        kv = await js.key_value(subjects.FETCH_HASHES_BUCKET)
        assert (await kv.get("regular.lynx_titan")).value == b"0123"
        lease = await js.stream_info(f"KV_{subjects.SCHEDULER_LEASE_BUCKET}")
        assert lease.config.max_age == natsx.LEASE_TTL_S  # the other buckets are untouched
    finally:
        await nc.close()


async def test_a_lease_bucket_of_an_older_release_takes_the_shorter_ttl(nats_url):
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        # As the release before created it: a 10 s TTL, and a duplicate window of 10 s with it.
        await js.create_key_value(
            KeyValueConfig(bucket=subjects.SCHEDULER_LEASE_BUCKET, history=1, ttl=10.0)
        )
        await natsx.declare(js, Settings(nats_url=nats_url))
        lease = await js.stream_info(f"KV_{subjects.SCHEDULER_LEASE_BUCKET}")
        assert lease.config.max_age == natsx.LEASE_TTL_S
        assert lease.config.duplicate_window <= natsx.LEASE_TTL_S
    finally:
        await nc.close()
