"""Fakes that record: local stand-ins for the services Briefbot talks to."""
