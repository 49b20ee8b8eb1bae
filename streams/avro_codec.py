"""Faust codec for covidtech events: Avro single-object encoding (see :mod:`schemas.codec`).

``register()`` installs it as ``"avro-so"``; topics then use ``value_serializer="avro-so"`` and
exchange :class:`schemas.codec.Event` values. Decoding errors surface as
:class:`schemas.codec.CodecError` subclasses, which agents route to the dead-letter topic.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from schemas.codec import Event, Registry, default_registry

__all__ = ["CODEC_NAME", "AvroSingleObject", "register"]

CODEC_NAME = "avro-so"


class AvroSingleObject(codecs.Codec):  # type: ignore[misc]  # faust is untyped here
    """Encodes an :class:`Event` to single-object Avro bytes and back.

    ``registry`` defaults to the packaged schemas; ``reader`` names the reader schema to resolve
    every writer schema into (default: the current schema of the writer's own name).
    """

    def __init__(
        self,
        children: tuple[Any, ...] | None = None,
        *,
        registry: Registry | None = None,
        reader: str | None = None,
        **kwargs: Any,
    ) -> None:
        # Kept in kwargs so that faust's clone() (used by `codec | other`) preserves them.
        super().__init__(children=children, registry=registry, reader=reader, **kwargs)
        self._registry = registry
        self._reader = reader

    @property
    def registry(self) -> Registry:
        return self._registry if self._registry is not None else default_registry()

    def _dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, Event):
            raise TypeError(f"{CODEC_NAME} encodes schemas.codec.Event, not {type(obj).__name__}")
        return self.registry.encode(obj.name, obj.record)

    def _loads(self, s: bytes) -> Event:
        return self.registry.decode(s, self._reader)


def register(
    name: str = CODEC_NAME, *, registry: Registry | None = None, reader: str | None = None
) -> AvroSingleObject:
    """Register an :class:`AvroSingleObject` in faust's codec registry under ``name``."""
    codec = AvroSingleObject(registry=registry, reader=reader)
    codecs.register(name, codec)
    return codec
