"""The steps of a run: plan and preflight, decide a partition, split and merge, record."""
