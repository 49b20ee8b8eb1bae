"""The problem-details contract both APIs share (RFC 9457).

The media type, the ``type`` URN prefix and the shape of an error class are one contract: a
client that handles ``urn:covidtech:problem:token-expired`` from the ingest API handles it from
the read API too. Each API keeps its own catalogue of classes and its own handlers.
"""

from __future__ import annotations

from dataclasses import dataclass

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:covidtech:problem:"


@dataclass(frozen=True, slots=True)
class ProblemType:
    """An error class: its slug (the end of the type URI), title and HTTP status."""

    slug: str
    title: str
    status: int


def type_uri(slug: str) -> str:
    """The stable ``type`` URI of an error class."""
    return TYPE_PREFIX + slug
