"""A minimal gateway process that embeds the config store.

It opens the store the way Moltis would (`open_store()`: backend from
MOLTIS_CONFIG_BACKEND or `[config] backend`), serves its effective config as JSON on
http://127.0.0.1:PORT/config (secrets masked), and reloads whenever another process
appends to the ledger — no restart, no file watcher.

    MOLTIS_CONFIG_BACKEND=sqlite python examples/gateway.py --port 8787
    moltis-ledger set server.port 9000 --reason "move the gateway"   # in another shell
    curl -s http://127.0.0.1:8787/config | jq .server.port           # 9000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

import msgspec

from ledger import LedgerConfigStore, MoltisConfig, Secret
from ledger.ops.open_store import open_store

log = logging.getLogger("gateway")


def masked(cfg: MoltisConfig) -> dict:
    def hook(obj: object) -> object:
        if isinstance(obj, Secret):
            return obj.masked()
        raise NotImplementedError
    return msgspec.json.decode(msgspec.json.encode(cfg, enc_hook=hook))


class Gateway:
    def __init__(self) -> None:
        self.store = open_store()
        self.config: dict = {}
        self.version = 0

    async def reload(self) -> None:
        self.config = masked(await self.store.load_effective())
        self.version = await self.store.head_seq()
        log.warning("config loaded at seq %s (port %s)", self.version,
                    self.config["server"]["port"])

    async def follow(self) -> None:
        if not isinstance(self.store, LedgerConfigStore):
            return  # the file store has no history to follow; Moltis restarts instead
        async for event in self.store.watch(poll_interval=0.1):
            log.warning("seq %s by %s: %s", event.seq, event.actor, ", ".join(event.paths))
            await self.reload()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        ok = request.split()[1:2] == [b"/config"]
        body = json.dumps({"seq": self.version, "config": self.config} if ok
                          else {"error": "try /config"}).encode()
        status = b"200 OK" if ok else b"404 Not Found"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                     b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()


async def main(port: int) -> None:
    gateway = Gateway()
    await gateway.reload()
    server = await asyncio.start_server(gateway.handle, "127.0.0.1", port)
    print(f"serving http://127.0.0.1:{port}/config", flush=True)
    async with server:
        await asyncio.gather(server.serve_forever(), gateway.follow())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8787)
    logging.basicConfig(stream=sys.stderr, format="gateway: %(message)s")
    asyncio.run(main(parser.parse_args().port))
