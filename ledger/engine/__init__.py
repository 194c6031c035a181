"""The ledger engine: one backend, the projections, the head cache and appends
(`ledger.Ledger`), and the vault that seals secrets at rest.

Depends on `core`, `schema`, `typed`, `backends` and `projections`."""
