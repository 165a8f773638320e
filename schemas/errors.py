"""The one exception tree of Maximum Continual.

Every error the project raises on purpose derives from :class:`MaximumContinualError`, so an app can
catch the whole family with one ``except`` and a worker can tell "bad input" from "broken
infrastructure"::

    MaximumContinualError
    ├── ConfigurationError            settings that cannot work (bad value, missing dependency)
    ├── SchemaError                   bytes or objects that are not a valid event
    │   ├── MalformedEventError       not UTF-8 / not JSON / not a JSON object
    │   ├── InvalidEventError         JSON, but it fails the model's validation
    │   ├── UnsupportedSchemaVersionError
    │   ├── UnsupportedFormatVersionError  a stored record (the join's changelog) of an unknown format
    │   └── EventTooLargeError        over ``MC_MAX_EVENT_BYTES``
    ├── KafkaError                    wraps a librdkafka error, with ``.code`` and ``.description``
    │   ├── PublishError              the producer refused the message (queue full, closed, ...)
    │   │   └── DeliveryError         the broker never acknowledged it
    │   └── TopicError                topics missing or not shaped as the contract says
    ├── StorageError                  the S3 store failed
    ├── AdapterError                  an adapter could not be trained, verified or loaded
    │   ├── UntrustedAdapterError     an update not signed by a trainer, or naming files elsewhere
    │   ├── AdapterVerificationError  a stored file's sha256 is not the announced one
    │   └── VersionTaken              a version's file exists with other bytes (another writer's)
    ├── SandboxError                  agent code broke the sandbox's rules
    └── StackError                    a local service did not start or answer

Domain errors never subclass web-framework exceptions; HTTP edges map them to status codes.
"""

from __future__ import annotations

__all__ = [
    "AdapterError",
    "AdapterVerificationError",
    "ConfigurationError",
    "DeliveryError",
    "EventTooLargeError",
    "InvalidEventError",
    "KafkaError",
    "MalformedEventError",
    "MaximumContinualError",
    "PublishError",
    "SandboxError",
    "SchemaError",
    "StackError",
    "StorageError",
    "TopicError",
    "UnsupportedFormatVersionError",
    "UnsupportedSchemaVersionError",
    "UntrustedAdapterError",
    "VersionTaken",
]


class MaximumContinualError(Exception):
    """Root of every error raised on purpose by this project."""


class ConfigurationError(MaximumContinualError):
    """Settings or an environment that cannot work."""


class SchemaError(MaximumContinualError):
    """Bytes or an object that is not a valid event of the contract.

    ``raw`` keeps the original bytes (when there were bytes) so a worker can dead-letter them
    unchanged; ``reason`` is a short machine-readable tag.
    """

    reason = "schema_error"

    def __init__(self, message: str, *, raw: bytes | None = None) -> None:
        super().__init__(message)
        self.raw = raw


class MalformedEventError(SchemaError):
    """Not UTF-8, not JSON, or not a JSON object."""

    reason = "malformed"


class InvalidEventError(SchemaError):
    """Well-formed JSON that fails the event model's validation."""

    reason = "invalid"

    def __init__(
        self, message: str, *, raw: bytes | None = None, errors: list[dict[str, object]] | None = None
    ) -> None:
        super().__init__(message, raw=raw)
        self.errors = errors or []


class UnsupportedSchemaVersionError(SchemaError):
    """An event written for a schema version this code does not know."""

    reason = "unsupported_schema_version"


class UnsupportedFormatVersionError(SchemaError):
    """A stored record (not an event: a worker's own state, such as the join's changelog) written in a
    format version this code does not know."""

    reason = "unsupported_format_version"


class EventTooLargeError(SchemaError):
    """An encoded event above the configured size limit."""

    reason = "too_large"


class KafkaError(MaximumContinualError):
    """A Kafka operation failed; ``code`` and ``description`` come from librdkafka when known."""

    def __init__(self, message: str, *, code: str | None = None, description: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.description = description


class PublishError(KafkaError):
    """The producer did not accept a message."""


class DeliveryError(PublishError):
    """One or more messages were not acknowledged by the broker."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        description: str | None = None,
        failures: list[tuple[str, bytes | None, str]] | None = None,
    ) -> None:
        super().__init__(message, code=code, description=description)
        #: (topic, key, error) of each failed delivery
        self.failures = failures or []


class TopicError(KafkaError):
    """Topics are missing or not shaped as the contract requires."""


class StorageError(MaximumContinualError):
    """The S3-compatible store failed."""


class AdapterError(MaximumContinualError):
    """An adapter could not be trained, verified, uploaded or loaded."""


class UntrustedAdapterError(AdapterError):
    """An AdapterUpdate that is unsigned, wrongly signed, or points outside the adapters' own prefix.

    ``reason`` is a short tag (``unsigned``, ``bad_signature``, ``foreign_uri``) for counters.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class AdapterVerificationError(AdapterError):
    """A downloaded file's sha256 differs from the one the AdapterUpdate (or the object) announced."""


class VersionTaken(AdapterError):
    """A file of the version exists with other bytes: another writer's (alive, or crashed) files."""


class SandboxError(MaximumContinualError):
    """Agent code broke a rule of the sandbox (import, file, network, time)."""


class StackError(MaximumContinualError):
    """A local service did not start, or did not become healthy in time."""

    def __init__(self, message: str, *, component: str | None = None, log_file: str | None = None) -> None:
        super().__init__(message)
        self.component = component
        self.log_file = log_file
