"""The typed layer: the raw document <-> `MoltisConfig`, `check`, turning typed edits into
stored changes, the per-section head cache, and the environment/flag layers.

Depends on `core` and `schema`."""
