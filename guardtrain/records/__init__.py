"""What a run leaves behind: the history (Parquet), the events, the run directory, how the
run ended (``run_end``), the ``Result`` and the run record read back from disk
(docs/architecture.md, "Files on disk")."""
