"""One stored number that a re-derivation (`tds check`) does not reproduce."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Mismatch:
    example: int
    t: int
    field: str
    stored: object
    expected: object

    def __str__(self) -> str:
        return f"example {self.example}, t {self.t}: {self.field} stored {self.stored}, naive {self.expected}"
