"""The core model, pure and without I/O: change events and their codec, the hash chain,
the raw document tree, key paths, secret references, actors and time words.

Depends only on `ledger.errors`; everything else in the project builds on it."""
