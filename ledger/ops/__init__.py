"""Operator operations over a ledger: history (diff, blame, rollback), export and
bundles, backup and restore, migration from the files, and copies between backends.

Used by the CLI and the web view; depends on `stores` and everything below it."""
