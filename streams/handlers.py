"""The handlers of one worker, built from the domain rules (``Settings.domain_rules`` and
``Settings.status_rules``)."""

from __future__ import annotations

from domain.results import DEFAULT_RULES as RESULT_RULES
from domain.results import ResultRules
from domain.rules import DEFAULT_RULES, PresenceRules
from domain.status import DEFAULT_RULES as STATUS_RULES
from domain.status import StatusRules
from streams.chains import ChainHandler
from streams.context import Handler
from streams.directory import DirectoryHandler
from streams.people import PersonHandler
from streams.programme import ProvinceProgrammeHandler, RegistrationHandler
from streams.testing import DeclarationHandler, SampleHandler
from streams.vaccination import CoverageHandler, DoseHandler
from streams.venues import VenueHandler


def all_handlers(
    rules: PresenceRules = DEFAULT_RULES,
    results: ResultRules = RESULT_RULES,
    status: StatusRules = STATUS_RULES,
) -> list[Handler]:
    """One handler per agent; each lists its source topics and state tables."""
    return [
        DirectoryHandler(),
        PersonHandler(rules, results, status),
        VenueHandler(rules, status),
        ChainHandler(rules, results),
        SampleHandler(rules, results),
        DeclarationHandler(rules),
        DoseHandler(),
        CoverageHandler(),
        RegistrationHandler(),
        ProvinceProgrammeHandler(),
    ]
