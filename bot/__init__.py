"""Briefbot: answers questions about indexed sources with verbatim, cited quotes, and sends digests."""

__version__ = "0.1.0"
