"""Producers of one Batch structure (NumPy arrays, whole batches at a time)."""
