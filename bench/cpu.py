"""CPU seconds spent by each part of the stack during a measurement: on a 2-core machine the
question "what limits throughput" is mostly "who used the cores"."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from shared.devstack.stack import Devstack


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _matching(*needles: str) -> list[psutil.Process]:
    """Processes whose command line holds every needle (the embedded servers are found by port)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if all(needle in cmdline for needle in needles):
            found.extend(_tree(process.pid))
    return found


def stack_processes(stack: Devstack) -> dict[str, list[psutil.Process]]:
    groups = {name: _tree(service.process.pid) for name, service in stack.services.items()}
    if stack.embedded:
        groups["postgres"] = _matching("postgres", f"-p {stack.pg_port}")
        groups["broker"] = _matching("tansu", f":{stack.kafka_port}")
    groups["bench (this process)"] = [psutil.Process(os.getpid())]  # its children are the stack, counted above
    return groups


def _cpu(process: psutil.Process) -> tuple[float, float]:
    """(own CPU, CPU of children that already exited, e.g. short-lived PostgreSQL backends)."""
    try:
        times = process.cpu_times()
        return times.user + times.system, times.children_user + times.children_system
    except psutil.Error:
        return 0.0, 0.0


@dataclass
class CpuMeter:
    """CPU seconds per group of processes between start() and stop(); the groups are looked up
    again at stop(), so a process started in between (a new database backend) counts in full."""

    groups: Callable[[], dict[str, list[psutil.Process]]]
    _start: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)

    def start(self) -> None:
        self._start = {(name, p.pid): _cpu(p) for name, processes in self.groups().items() for p in processes}

    def stop(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for name, processes in self.groups().items():
            total = 0.0
            for process in processes:
                own, reaped = _cpu(process)
                own0, reaped0 = self._start.get((name, process.pid), (0.0, 0.0))
                total += (own - own0) + (reaped - reaped0)
            used[name] = round(total, 2)
        return used
