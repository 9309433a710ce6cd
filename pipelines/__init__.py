"""Contact exporters: the library (pure transforms and thin IO adapters, no Prefect)."""
