"""The estimator: parameters, fitting the maps, the transform graph, and the multi-run masker."""
