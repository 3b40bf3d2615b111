"""Progress within a batch: a tqdm bar of generated tokens (transformers' generate takes it as a streamer)."""

from __future__ import annotations

import os

from tqdm import tqdm
from transformers.generation.streamers import BaseStreamer


def quiet() -> bool:
    """Whether this process is not the one that reports (a rank other than 0 under torchrun)."""
    return os.environ.get("RANK", "0") != "0"


class TokenBar(BaseStreamer):
    """Counts the steps of one batch's generation, up to `total` tokens, on a bar that goes when it is done.
    The first `put` is the prompt; each later one is one new token per row."""

    def __init__(self, total: int, desc: str = "tokens in batch") -> None:
        self.bar = tqdm(total=total, desc=desc, unit="tok", leave=False, position=2, disable=quiet())
        self.prompt_seen = False

    def put(self, value: object) -> None:
        if self.prompt_seen:
            self.bar.update(1)
        self.prompt_seen = True

    def end(self) -> None:
        self.bar.close()
