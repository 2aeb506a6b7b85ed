"""Civic hub: omnichannel message intake and routing for public bodies."""

__version__ = "0.1.0"
