"""The COVID-19 vaccine products recorded at Vietnamese vaccination sites in 2021.

A DoseAdministered event names its product by ``code``. The only property the rules need is
whether the product's primary series is a single dose ("Dose coverage": the series completes
at the first dose if that dose is a single-dose product, such as Janssen, else at the second
dose whatever its product).

The list holds the products Vietnam's Ministry of Health approved for emergency use in 2021
and used in its programme, plus Janssen (approved in 2021), the single-dose product.
Codes are stable identifiers of the event contract (the examples in the DoseAdministered
schema doc): add products, never rename one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from domain.errors import UnknownKey

__all__ = ["VACCINES", "UnknownVaccine", "Vaccine", "get_vaccine", "is_vaccine"]


class UnknownVaccine(UnknownKey):
    """A product code that is not in :data:`VACCINES` (the ingest API answers 422)."""

    unnamed = "unknown vaccine"


@dataclass(frozen=True)
class Vaccine:
    """A vaccine product: its contract code, a readable name, and its primary-series shape."""

    code: str
    name: str
    single_dose: bool


_PRODUCTS = (
    Vaccine("AZ", "AstraZeneca (AZD1222, Vaxzevria / Covishield)", single_dose=False),
    Vaccine("PFIZER", "Pfizer-BioNTech (BNT162b2, Comirnaty)", single_dose=False),
    Vaccine("MODERNA", "Moderna (mRNA-1273, Spikevax)", single_dose=False),
    Vaccine("SINOPHARM", "Sinopharm (BBIBP-CorV, Vero Cell)", single_dose=False),
    Vaccine("SPUTNIK_V", "Gamaleya Sputnik V (Gam-COVID-Vac)", single_dose=False),
    Vaccine("ABDALA", "CIGB Abdala (CIGB-66)", single_dose=False),
    Vaccine("HAYAT_VAX", "Hayat-Vax (BBIBP-CorV, G42/Sinopharm)", single_dose=False),
    Vaccine("JANSSEN", "Janssen (Ad26.COV2.S)", single_dose=True),
)

#: Products by code, read-only.
VACCINES: Mapping[str, Vaccine] = MappingProxyType({v.code: v for v in _PRODUCTS})


def is_vaccine(code: str) -> bool:
    """Whether ``code`` names a known product (validation at ingestion)."""
    return code in VACCINES


def get_vaccine(code: str) -> Vaccine:
    """The product with contract code ``code``; raises :class:`UnknownVaccine`.

    Why: the completion rule of "Dose coverage" depends on the product's single-dose flag,
    so a dose of an unknown product cannot be placed in a person's series. Codes match
    exactly (they are contract values, not user input).
    """
    try:
        return VACCINES[code]
    except KeyError as e:
        known = ", ".join(VACCINES)
        raise UnknownVaccine(f"unknown vaccine {code!r}: expected one of {known}") from e
