"""The `ConfigStore` and `ProviderStore` contracts and their implementations: the ledger
(SQLite, memory, PostgreSQL), the plain `moltis.toml` file store, and `open_store()`.

Depends on `engine` and everything below it."""
