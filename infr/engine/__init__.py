"""The engine: what every remote feature is built from. It never imports a feature."""
