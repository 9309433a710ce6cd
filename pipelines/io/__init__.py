"""IO adapters: sources, export files, the warehouse and its analyst views, the exporter store."""
