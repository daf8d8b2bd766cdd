"""The exception tree. Catch ``EdgeAgentError`` only at supervision boundaries.

EdgeAgentError
├── ConfigError            bad config file (exit 78); carries one line per problem
├── ModelError             a model cannot be used
│   └── ModelIntegrityError    bytes do not match the manifest's sha256
├── RuntimeBackendError    an inference back-end is missing or failed
├── SourceError            a camera, microphone or media file cannot be read
├── ExtractorError         pre/post-processing or engine failure
├── PublishError           MQTT connection or publish failure
└── ReportError            the timeline report cannot be written (plotly missing, disk)
"""

from __future__ import annotations


class EdgeAgentError(Exception):
    """Base class of every error the agent raises on purpose."""


class ConfigError(EdgeAgentError):
    """The configuration is invalid. ``problems`` holds one line per error."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ModelError(EdgeAgentError):
    """A model file or manifest cannot be used."""


class ModelIntegrityError(ModelError):
    """A model file does not match the sha256 in its manifest."""


class RuntimeBackendError(EdgeAgentError):
    """An inference back-end is not installed or failed to run."""


class SourceError(EdgeAgentError):
    """A camera, microphone or media file cannot be opened or read."""


class ExtractorError(EdgeAgentError):
    """An extractor or speech engine failed."""


class PublishError(EdgeAgentError):
    """The MQTT connection or a publish failed."""


class ReportError(EdgeAgentError):
    """The timeline report cannot be made or written."""
