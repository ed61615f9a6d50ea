"""The Ray layer (docs/architecture.md, "Launch"): ``cluster`` (which cluster, and whether it
holds the run), ``launch`` (the driver's run on Ray Train, errors back as themselves),
``worker`` (the worker's strategy, rank and error wrapper), ``watchdog`` (a rank that makes
no progress), ``checkpoint`` (crash recovery) and ``runner`` (``gt.fit`` on the workers)."""
