"""The Ray layer: the cluster, the launch, the worker's side and its watchdog, and the
fit on Ray Train workers (docs/architecture.md)."""
