"""From images to feature vectors: extraction (extract.py) and its on-disk cache (cache.py)."""
