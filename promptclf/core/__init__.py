"""The bottom layer: errors, labels, the Method protocol, usage, hashing, metrics and data files."""
