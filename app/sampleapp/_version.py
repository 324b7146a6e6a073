"""Release version, written by tools/build-release into the staging copy it builds from."""

__version__ = "0.0.0.dev0"
