"""Storage backends: memory (reference), SQLite (apsw), PostgreSQL (optional extra)."""
