"""Briefbot's errors: one base class, mapped to user messages at each adapter's edge."""


class BriefbotError(Exception):
    """Base class of every error Briefbot raises on purpose."""


class ConfigError(BriefbotError):
    """The configuration is missing or invalid."""


class SourceError(BriefbotError):
    """A source could not be read, fetched or parsed."""


class InputError(BriefbotError):
    """A user's input (a question, a command argument) cannot be used."""


class IndexError_(BriefbotError):
    """The index could not be built or loaded."""


class LLMError(BriefbotError):
    """The configured language model failed or answered something unusable."""


class StoreError(BriefbotError):
    """The database could not be reached or refused an operation."""
