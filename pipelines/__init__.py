"""Contact exporters: the library (pure transforms and thin IO adapters, no Prefect)."""

import os

# Polars allocates through jemalloc, whose defaults (Polars' own: dirty pages kept 0.5 s, then
# "muzzy" for 1 s, purged only when the allocator is next busy) leave the pages a partition freed
# resident into the next one. At 16M borrowers (27 partitions; bench/results/large-2026-12-07.json)
# runs with those defaults peaked at 2,455 and 2,559 MiB. Purged at once: 2,040 MiB, but partitions
# 38 % slower. Purged by a background thread 250 ms after they are freed: 2,318 MiB, partitions 3 %
# slower. Read when Polars is first imported, so set before it (Polars puts its defaults in front;
# the last value wins); a value already in the environment is kept.
os.environ.setdefault("_RJEM_MALLOC_CONF", "background_thread:true,dirty_decay_ms:250,muzzy_decay_ms:0")
