"""Data: source readers, synthetic scenes, prepared datasets, streaming and augmentation."""
