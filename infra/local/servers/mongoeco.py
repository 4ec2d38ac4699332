"""mongoeco's wire server over a SQLite file, run by ``.venv-mongo``'s Python 3.13 (see ``__main__``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from infra.local.servers.mongoeco_patches import patch_mongoeco
from infra.local.servers.process import HOST


def serve_mongoeco(port: int, path: Path) -> None:
    """Serve a SQLite-backed mongoeco database over the MongoDB wire protocol until SIGTERM/SIGINT."""
    import asyncio

    from mongoeco.engines.sqlite import SQLiteEngine
    from mongoeco.wire import AsyncMongoEcoProxyServer

    # MONGOECO_PATCHES=off serves mongoeco as released: to re-measure after an upgrade.
    patches = [] if os.environ.get("MONGOECO_PATCHES") == "off" else patch_mongoeco()

    async def serve() -> None:
        # No materialisation budget: like MongoDB with allowDiskUse, a $group over many documents works.
        engine = SQLiteEngine(path=str(path), aggregation_materialization_limit=None)
        server = AsyncMongoEcoProxyServer(engine=engine, host=HOST, port=port)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, stopping.set)
        await server.start()
        applied = ", ".join(patches) or "none"
        print(f"mongoeco serving {path} on {HOST}:{port} (patches: {applied})", flush=True)
        await stopping.wait()
        await server.close()  # closes the engine, so SQLite is left consistent

    asyncio.run(serve())
