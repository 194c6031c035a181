"""Files on disk: Moltis's directory rules and safe reads and writes (atomic, private,
never through a symlink). Depends on `ledger.errors` only."""
