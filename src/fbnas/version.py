"""The package version (a leaf module: run manifests and the CLI read it without importing the package)."""

__version__ = "0.1.0"
