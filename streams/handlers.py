"""The handlers of one worker, built from the presence rules (DESIGN's defaults unless given:
no process reads them from its settings yet)."""

from __future__ import annotations

from domain.rules import DEFAULT_RULES, PresenceRules
from streams.context import Handler
from streams.directory import DirectoryHandler
from streams.people import PersonHandler
from streams.programme import ProvinceProgrammeHandler, RegistrationHandler
from streams.testing import DeclarationHandler, SampleHandler
from streams.vaccination import CoverageHandler, DoseHandler
from streams.venues import VenueHandler


def all_handlers(rules: PresenceRules = DEFAULT_RULES) -> list[Handler]:
    """One handler per agent; each lists its source topics and state tables."""
    return [
        DirectoryHandler(),
        PersonHandler(rules),
        VenueHandler(rules),
        SampleHandler(rules),
        DeclarationHandler(rules),
        DoseHandler(),
        CoverageHandler(),
        RegistrationHandler(),
        ProvinceProgrammeHandler(),
    ]
