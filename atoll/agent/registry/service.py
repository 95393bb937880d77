"""What the agent offers for registries: pull, push and login checks, as streams of events.

The controller passes the project's credentials with each call (it keeps them; the agent never stores
them); each is only ever sent to the registry host it was stored for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from atoll.agent.images.store import ImageStore
from atoll.agent.registry.client import connect
from atoll.agent.registry.options import RegistryOptions
from atoll.agent.registry.pull import Puller
from atoll.agent.registry.push import push
from atoll.model.errors import InvalidInput
from atoll.model.reference import parse_image_reference
from atoll.model.registry import Credential, PullEvent, PushEvent, TransferEvent

_END = object()


class Registries:
    def __init__(self, store: ImageStore, options: RegistryOptions) -> None:
        self._store = store
        self.options = options
        self._puller = Puller(store, options)

    async def close(self) -> None:
        await self._puller.close()

    async def ready(self) -> None:
        """Start the pull worker processes now instead of on the first pull, and wait until they are up."""
        await self._puller.ready()

    def pull_worker_pids(self) -> list[int]:
        return self._puller.worker_pids()

    def pull(self, reference: str, credentials: Mapping[str, Credential]) -> AsyncIterator[PullEvent]:
        return self._puller.pull(parse_image_reference(reference), credentials)

    async def push(
        self, image_id: str, reference: str, credentials: Mapping[str, Credential]
    ) -> AsyncIterator[PushEvent]:
        ref = parse_image_reference(reference)
        if ref.digest:
            raise InvalidInput(f"reference: {reference!r}: push needs a tag, not a digest")
        src = await asyncio.to_thread(self._store.push_source, image_id)
        client = await connect(
            f"https://{ref.api_host}", ref.api_host, self.options, credentials.get(ref.api_host)
        )
        queue: asyncio.Queue[TransferEvent | object] = asyncio.Queue()
        try:
            task = asyncio.ensure_future(push(client, src, ref, queue.put_nowait))
            task.add_done_callback(lambda _: queue.put_nowait(_END))
            try:
                while (item := await queue.get()) is not _END:
                    assert isinstance(item, TransferEvent)
                    yield item
            finally:
                if not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            yield task.result()
        finally:
            await client.aclose()

    async def login(self, registry: str, credential: Credential) -> None:
        """Check that ``registry`` accepts ``credential`` (``GET /v2/`` through its auth flow)."""
        host = "registry-1.docker.io" if registry in ("docker.io", "index.docker.io") else registry
        client = await connect(f"https://{host}", host, self.options, credential)
        try:
            await client.check()
        finally:
            await client.aclose()
