"""Partial work of a run: one small artifact per finished batch, so a killed run resumes.

The folder out_dir/.NAME.partial/ holds `fingerprint` (a hash of the config and
the dataset) and batch files, each a complete artifact of a few examples
written atomically. A rerun with the same fingerprint skips what they hold; a
different fingerprint discards them, saying so. All ranks of a torchrun job
write into the same folder (a filesystem they share).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from compute.core.artifact.errors import ArtifactError
from compute.core.artifact.examples import read_examples
from compute.core.artifact.reader import open_artifact
from compute.core.artifact.records import ExampleScores, RunMeta
from compute.core.artifact.writer import write_artifact


class PartialWork:
    def __init__(self, folder: Path, fingerprint: str):
        self.folder = folder
        self.fingerprint = fingerprint

    @property
    def _stamp(self) -> Path:
        return self.folder / "fingerprint"

    def open(self, log) -> None:
        """Make the folder, or clear it when it holds work of another config or dataset (main rank only)."""
        if self.folder.exists():
            stamp = self._stamp.read_text().strip() if self._stamp.exists() else ""
            if stamp == self.fingerprint:
                return
            log(f"discarding partial work in {self.folder}: it is from a different config or dataset")
            shutil.rmtree(self.folder)
        # made aside and renamed into place, so shards starting at once never see a folder without its stamp
        staging = Path(tempfile.mkdtemp(prefix=f"{self.folder.name}.", suffix=".tmp", dir=self.folder.parent))
        (staging / "fingerprint").write_text(self.fingerprint + "\n")
        try:
            staging.rename(self.folder)
        except OSError:  # another shard made it first
            shutil.rmtree(staging)
            self.open(log)

    def _batch_files(self) -> list[Path]:
        return sorted(self.folder.glob("batch-*.h5"))

    def done(self) -> set[int]:
        """Dataset indices of the examples already scored."""
        indices: set[int] = set()
        for path in self._batch_files():
            try:
                indices.update(int(i) for i in open_artifact(path).read("examples/index"))
            except ArtifactError:
                continue  # unreadable: its examples are scored again
        return indices

    def recorded(self, key: str) -> object | None:
        """A root attribute the finished batches were written with (a value fixed before the first batch, such as
        a calibrated threshold), or None when no batch holds it."""
        for path in self._batch_files():
            try:
                return open_artifact(path).attrs.get(key)
            except ArtifactError:
                continue
        return None

    def save(self, meta: RunMeta, examples: list[ExampleScores], token_text: dict[int, str]) -> None:
        if not self.folder.is_dir():
            raise ArtifactError(
                f"{self.folder}: the partial-work folder was removed or replaced during the run; "
                "run the same command again to start over"
            )
        first = min(e.index for e in examples)
        write_artifact(self.folder / f"batch-{first:08d}-{len(examples)}.h5", meta, examples, token_text, True)

    def collect(self) -> tuple[dict[int, ExampleScores], dict[int, str]]:
        """Every scored example by dataset index, and the union of the token tables."""
        examples: dict[int, ExampleScores] = {}
        token_text: dict[int, str] = {}
        for path in self._batch_files():
            try:
                artifact = open_artifact(path)
            except ArtifactError:
                continue
            for example in read_examples(artifact):
                examples[example.index] = example
            token_text.update(artifact.token_texts())
        return examples, token_text

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
