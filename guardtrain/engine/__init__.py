"""The TensorFlow layer: the chunked step, snapshots, the loop, the supervisor, inputs,
devices, and the session that sets a run up for both runners (docs/architecture.md)."""
