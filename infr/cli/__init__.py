"""The CLI layer: parses arguments and prints. The only place that imports click and rich."""
