"""Entry points: CLI, HTTP API and Prefect flows over the pipelines library."""

import pipelines  # noqa: F401  (first: it sets Polars' allocator up before Polars loads)
