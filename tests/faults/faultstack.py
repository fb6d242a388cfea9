"""A stack of its own for the fault scenarios, with the levers they pull: kill -9, SIGSTOP/SIGCONT
or restart a service (optionally armed with a crash point), stop and start PostgreSQL, kill the broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Mapping
from pathlib import Path

from support import eventually

from shared.devstack.stack import REPO, Devstack
from shared.settings import Settings

FAULT_ROOT = REPO / ".devstack" / "faults"


# Services start with a pinned hash seed, so a scenario replays the same way: the order in which a
# consumer handles the partitions of one fetch follows set order (string hashes). With some seeds the
# stalled allocator reads its shortfalls before the receipts and hides what seed 0 shows.
HASH_SEED = "0"


class FaultStack(Devstack):
    """A Devstack whose services, database and broker the fault scenarios may break and heal."""

    def service_env(self) -> dict[str, str]:
        # The still-waiting period back at its default: the session's short one would keep the
        # notifier busy forever, and the scenarios are checked at quiescence.
        return {**super().service_env(), "PYTHONHASHSEED": HASH_SEED, "NOTIFY_STILL_WAITING_EVERY_DAYS": "7"}

    async def outstanding(self) -> int:
        """Quiescent also means the notifier has sent what is due: the checker reads outboxes and
        topics, and a message recorded meanwhile would write an event after its snapshot."""
        return await super().outstanding() + await self.messages_due()

    async def messages_due(self) -> int:
        """Open coalescing windows and messages whose send is due (a retry scheduled later does not count)."""
        if "notifier" not in self.services:
            return 0
        async with self.connect("notifier") as conn:
            due: int = await conn.fetchval(
                "SELECT (SELECT count(*) FROM notice_window)"
                " + (SELECT count(*) FROM notification WHERE status IN ('pending', 'sending') AND next_attempt_at <= now())"
            )
        return due

    def pid(self, service: str) -> int:
        return self.services[service].process.pid

    def kill(self, service: str) -> None:
        """kill -9: no drain, no flush, no cleanup."""
        process = self.services[service].process
        if process.poll() is None:
            process.kill()
        process.wait()

    def pause(self, service: str) -> None:
        os.kill(self.pid(service), signal.SIGSTOP)

    def resume(self, service: str) -> None:
        os.kill(self.pid(service), signal.SIGCONT)

    async def restart(self, service: str, extra_env: Mapping[str, str] | None = None, ready: bool = True) -> None:
        """Kill the service (if alive) and start it again on its port, with `extra_env` for this
        process only (e.g. {"FAULT_CRASH_AT": "consumer.after_db_commit:3"})."""
        old = self.services[service]
        self.kill(service)
        if old.log_file:
            old.log_file.close()
        self.start_service(service, old.port, extra_env=extra_env)
        if ready:  # only this one: another service may be dying at its own crash point meanwhile
            await self.wait_ready(keys=[service])

    async def wait_exited(self, service: str, timeout: float) -> bool:
        """True once the service's process has died (e.g. at its armed crash point)."""
        process = self.services[service].process

        async def exited() -> bool:
            return process.poll() is not None

        return bool(await eventually(exited, timeout=timeout, interval=0.05))

    async def stop_postgres(self) -> None:
        assert self.postgres is not None, "the fault stack needs the embedded PostgreSQL"
        await asyncio.to_thread(self.postgres.stop)

    async def start_postgres(self) -> None:
        assert self.postgres is not None, "the fault stack needs the embedded PostgreSQL"
        await asyncio.to_thread(self.postgres.start)

    def kill_broker(self) -> None:
        """kill -9 of the embedded broker (it forgets every topic, offset and group)."""
        assert self.broker is not None and self.broker._proc is not None, "the fault stack needs the embedded broker"
        self.broker._proc.kill()
        self.broker._proc.wait()

    async def crash_everything(self) -> None:
        """kill -9 of every process of the stack at once: the services, the broker, and PostgreSQL
        (the postmaster and its backends). Nothing is stopped cleanly; start() brings it back."""
        for service in self.services.values():
            if service.process.poll() is None:
                service.process.kill()
        self.kill_broker()
        assert self.postgres is not None, "the fault stack needs the embedded PostgreSQL"
        postmaster = int((self.postgres.data_dir / "postmaster.pid").read_text().split()[0])
        family = [postmaster, *_children(postmaster)]
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for service in self.services.values():
            service.process.wait()
            if service.log_file:
                service.log_file.close()
        self.services.clear()
        await self.close_probe()

        async def all_gone() -> bool:
            return not any(_alive(pid) for pid in family)

        assert await eventually(all_gone, timeout=10), "PostgreSQL processes outlived kill -9"



def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def fault_stack_from_env(root: Path = FAULT_ROOT) -> FaultStack:
    """Ports from FAULT_PG_PORT, FAULT_KAFKA_PORT and TEST_PORT_BASE + 101..104; a fresh data dir,
    so the outboxes hold only this session's events (the history check compares them with topics)."""
    base = int(os.environ.get("TEST_PORT_BASE", "18000"))
    ports = {f"{name}_port": base + 101 + i for i, name in enumerate(("orders", "inventory", "allocator", "notifier"))}
    shutil.rmtree(root, ignore_errors=True)
    # Half the session stack's session timeout: after every kill -9 of a consumer its group waits that
    # long for the dead member, then a join takes half of it (EMBEDDED.md); the scenarios kill a lot.
    timeouts = {"kafka_session_timeout_ms": 3000, "kafka_heartbeat_interval_ms": 500}
    return FaultStack(
        Settings(**ports, **timeouts), root=root, log_to_files=True, embedded_only=True,  # type: ignore[arg-type]
        pg_port=int(os.environ.get("FAULT_PG_PORT", "25436")), kafka_port=int(os.environ.get("FAULT_KAFKA_PORT", "29096")),
    )
