"""What a process costs, read from /proc: CPU-seconds, resident memory, and the kernel's socket memory."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5), after pid and comm
    return (utime + stime) / _TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def tcp_socket_memory_bytes() -> int:
    """Memory the kernel holds for all TCP sockets (``TCP: ... mem N`` in /proc/net/sockstat, in pages)."""
    with open("/proc/net/sockstat") as sockstat:
        for line in sockstat:
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("mem") + 1]) * _PAGE
    return 0


@dataclass
class CpuWindow:
    """CPU-seconds each named process spent between ``start()`` and ``stop()``."""

    pids: dict[str, int]

    def start(self) -> None:
        self._begin = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        return {name: round(cpu_seconds(pid) - self._begin[name], 4) for name, pid in self.pids.items()}


def cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
