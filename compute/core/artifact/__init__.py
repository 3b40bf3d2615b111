"""The TDS artifact, format version 1 (docs/artifact-format.md): the contract between compute/ and dashboard/.

Every module here imports only h5py and numpy (never torch), so the dashboard reads with the same checked reader.
Import each name from the module that owns it; this package re-exports nothing.

- layout: the format's name and version and the dataset names more than one module needs
- errors: ArtifactError, the one-line fault of a file
- records: the in-memory records a run writes (ExampleScores, SideContext, RunMeta)
- writer: write_artifact, the atomic writer
- temp_files: the temp files a killed write leaves behind
- checks: every check a file must pass before it is read
- reader: open_artifact and Artifact, columns read on demand
- examples: read_examples, every example back as records (to merge partial work)
- branching_samples: the optional /branching sampled continuations
- decoding: how a run's answers were decoded (root attributes `decoding*`)
- verdicts: a verifiable task's verdicts (/examples/correct)
- summary: summarize, a run's headline numbers
"""
