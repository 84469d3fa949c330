"""The run store: run folders (runs), atomic writes, locks, process liveness, timestamps, the
caches' location, and the CSV export."""
