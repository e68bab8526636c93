"""Temporal activities: all I/O of a run. Each is idempotent — ids come from the workflow and every
write is conditional or keyed — so a retry after a crash duplicates nothing."""
