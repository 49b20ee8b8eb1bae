"""The ingest API's request bodies, read into typed commands (pure: no I/O, no framework).

Each ``parse_*`` function reads one JSON value as its request model (``covidtech.web.models``:
declared once, for validation and the OpenAPI document), which checks everything that needs
no lookup (types, enums, lengths, province codes, QR signatures, time bounds against the
injected ``now``, pool sizes, vaccine products), and returns a frozen command, or ``None``
after appending :class:`~covidtech.web.problems.FieldError` s. What needs state (does the venue
exist, may this token write for that province, was this sample resulted) is checked by the
routes against the caches.

Field paths are relative to the request body, so a batch item's errors read ``scans[3].venue_qr``.

One module an area, as ``producers/routes/``: ``checkins`` (venues, people, scans,
declarations), ``testing`` (samples, results), ``vaccination`` (doses, registrations,
appointments), ``supply`` (allocations, discards, plans); ``common`` holds the id patterns,
the limits and the field rules they share.
"""
