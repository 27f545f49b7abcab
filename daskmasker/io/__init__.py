"""Reading and writing images: one dispatcher (``load``) above independent backends."""
