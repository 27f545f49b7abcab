"""The Dask runtime: clients, scheduling hints and forwarding of worker warnings."""
