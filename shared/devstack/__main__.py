"""`python -m shared.devstack run`: start servers and all services, print where they listen, keep
them running (a dead broker or service is restarted, see `Devstack.heal`), and stop everything
cleanly (drained) on Ctrl-C or SIGTERM. `migrate` only prepares the databases."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from shared.devstack.embedded import DevstackError
from shared.devstack.stack import DASHBOARD, REPO, Devstack
from shared.service import configure_logging
from shared.settings import SERVICES, get_settings

log = logging.getLogger("devstack")


async def run() -> int:
    os.environ.setdefault("DEVSTACK_SMTP_PORT", "2525")
    stack = Devstack(get_settings())
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    drain, code = True, 0
    try:
        await stack.start(dashboard=True)
        print("\nBackorder fulfilment is running:", flush=True)
        for name in SERVICES:
            print(f"  {name:<10} {stack.base_url(name)}   (OpenAPI: {stack.base_url(name)}/docs)", flush=True)
        print(f"dashboard    {stack.base_url(DASHBOARD)}/   (backorder book, live events, lag, dead letters)", flush=True)
        print(f"  CLI        {REPO / '.venv' / 'bin' / 'fulfil'} --help   (tail, trace, book, stock, lag, dlq)", flush=True)
        print(f"  PostgreSQL {stack.settings.database_url}\n  Kafka      {stack.settings.kafka_bootstrap_servers}", flush=True)
        if stack.mail_sink is not None:
            sink = stack.mail_sink
            print(f"  Mail       smtp://{sink.host}:{sink.port}: every customer email is saved in {sink.directory}/", flush=True)
        print("Press Ctrl-C to stop (intake closes, events drain, then the servers stop).\n", flush=True)
        await stack.supervise(stopping)
    except DevstackError as error:
        log.error("%s; stopping the stack", error)
        drain, code = False, 1
    finally:
        log.info("stopping: closing intake, draining outboxes and consumers" if drain else "stopping without a drain")
        await stack.stop(drain=drain)
        log.info("stopped")
    return code


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
    if args.command == "run":
        # Development: readable text from every process unless LOG_FORMAT says otherwise (JSON,
        # for a log pipeline, is the default everywhere else).
        os.environ.setdefault("LOG_FORMAT", "text")
    configure_logging(get_settings().log_level, get_settings().log_format)
    if args.command == "run":
        sys.exit(asyncio.run(run()))
    asyncio.run(prepare_only())


if __name__ == "__main__":
    main()
