"""Array-only computations: chunking, grids, temporal cleaning, regression, projection.

Nothing here knows about files, containers or the cluster: functions take and return NumPy
or Dask arrays.
"""
