"""Control model files: reading, detection, loading, the cache, the folder registry; networks and conversions."""
