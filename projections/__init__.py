"""Projections: fold the ledger's change events into views (config, providers) and
snapshot them. They depend only on the pure lower modules of `ledger` (events, doc,
paths, secrets), never on a store or a backend."""
