"""`python -m shared.devstack run`: start servers and all services, print where they listen, and
stop everything cleanly (drained) on Ctrl-C or SIGTERM. `migrate` only prepares the databases."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from shared.devstack.stack import Devstack
from shared.service import configure_logging
from shared.settings import SERVICES, get_settings

log = logging.getLogger("devstack")


async def run() -> None:
    stack = Devstack(get_settings())
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stack.start()
        print("\nBackorder fulfilment is running:", flush=True)
        for name in SERVICES:
            print(f"  {name:<10} {stack.base_url(name)}   (OpenAPI: {stack.base_url(name)}/docs)", flush=True)
        print(f"  PostgreSQL {stack.settings.database_url}\n  Kafka      {stack.settings.kafka_bootstrap_servers}", flush=True)
        print("Press Ctrl-C to stop (intake closes, events drain, then the servers stop).\n", flush=True)
        while not stopping.is_set():
            for key, service in stack.services.items():
                if service.process.poll() is not None:
                    log.error("%s exited with code %s; stopping the stack", key, service.process.returncode)
                    stopping.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 1.0)
    finally:
        log.info("stopping: closing intake, draining outboxes and consumers")
        await stack.stop(drain=True)
        log.info("stopped")


async def prepare_only() -> None:
    stack = Devstack(get_settings())
    try:
        await stack.start_servers()
        await stack.prepare()
    finally:
        await stack.stop(drain=False)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.devstack")
    parser.add_argument("command", choices=["run", "migrate"])
    args = parser.parse_args()
    configure_logging(get_settings().log_level)
    asyncio.run(run() if args.command == "run" else prepare_only())


if __name__ == "__main__":
    main()
