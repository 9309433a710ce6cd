"""Entry points: CLI, HTTP API and Prefect flows over the pipelines library."""
