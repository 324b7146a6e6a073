"""Sample WSGI application deployed by ec2-fleet (served by gunicorn)."""

from sampleapp._version import __version__

__all__ = ["__version__"]
