"""A one-line progress report on stderr for long reads of the topic (rebuild, replay export): done, rate, ETA."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TextIO


@dataclass
class Progress:
    label: str
    total: int  # in the unit of ``advance`` (records read)
    out: TextIO
    shown: bool = True  # False: count only (the export shows it only on a terminal)
    done: int = 0
    skipped: int = 0
    began: float = 0.0
    last_print: float = 0.0

    def start(self) -> None:
        self.began = self.last_print = time.monotonic()

    def advance(self, n: int, *, force: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if not self.shown or (not force and now - self.last_print < 0.5):
            return
        self.last_print = now
        elapsed = max(now - self.began, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate else float("inf")
        end = "\n" if force else "\r"
        self.out.write(f"{self.label}: {self.done:,}/{self.total:,} records, {rate:,.0f}/s, ETA {eta:,.0f} s   {end}")
        self.out.flush()
