"""Frame workers: a consumer group that detects faces, filters and republishes."""
