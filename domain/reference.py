"""Reference data: Vietnam's 63 provinces (2019 census) and the national age structure.

The data is bundled in ``domain/reference_data/`` (sources in ``SOURCES.md`` there) and read
once, at import, with :mod:`importlib.resources`, so the module works from a checkout, an
editable install and a wheel alike. Reading these files is the only I/O in the domain
package; the values are constants of the rules ("Dose coverage": population denominators come
from reference data), not state.

Denominators per age band are an approximation: the reference data has the national age
structure only, so a province's band population is its census population apportioned by the
*national* band shares (largest-remainder rounding, so a province's bands add up exactly to
its population). The nation's band population is the sum of its provinces' band populations,
so the denominators are additive exactly like the counts they divide.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from importlib import resources
from types import MappingProxyType

from domain.errors import UnknownKey

__all__ = [
    "AGE_SHARES",
    "NATION",
    "PROVINCES",
    "REGIONS",
    "Province",
    "ReferenceDataError",
    "UnknownAgeBand",
    "UnknownArea",
    "age_bands",
    "is_area",
    "is_province",
    "population",
]

#: Area code of the whole country; every other area is a GSO two-digit province code.
NATION = "VN"

#: Six socio-economic regions of GSO, the only values allowed in the ``region`` column.
REGIONS = (
    "Red River Delta",
    "Northern Midlands and Mountains",
    "North Central and Central Coast",
    "Central Highlands",
    "Southeast",
    "Mekong River Delta",
)

_PACKAGE = "domain.reference_data"
_PROVINCES_FILE = "vn_provinces_2021.csv"
_AGE_FILE = "vn_age_structure_2019.csv"
_EXPECTED_PROVINCES = 63


class ReferenceDataError(ValueError):
    """The bundled reference data is malformed (a packaging bug, raised at import)."""


class UnknownArea(UnknownKey):
    """An area that is neither ``"VN"`` nor one of the 63 province codes."""

    unnamed = "unknown area"


class UnknownAgeBand(UnknownKey):
    """An age band that the reference data does not have."""

    unnamed = "unknown age band"


@dataclass(frozen=True)
class Province:
    """One of Vietnam's 63 provinces (as of 2021), with its 2019 census population."""

    code: str
    name: str
    name_ascii: str
    region: str
    population: int


def _rows(filename: str) -> Iterator[dict[str, str]]:
    """Rows of a bundled CSV as dicts; lines starting with ``#`` are comments (sources)."""
    text = resources.files(_PACKAGE).joinpath(filename).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    yield from csv.DictReader(io.StringIO("\n".join(lines)))


def _load_provinces() -> dict[str, Province]:
    provinces: dict[str, Province] = {}
    for row in _rows(_PROVINCES_FILE):
        try:
            province = Province(
                code=row["code"].strip(),
                name=row["name"].strip(),
                name_ascii=row["name_ascii"].strip(),
                region=row["region"].strip(),
                population=int(row["population_2019"]),
            )
        except (KeyError, ValueError) as e:
            raise ReferenceDataError(f"{_PROVINCES_FILE}: bad row {row!r}") from e
        if not (len(province.code) == 2 and province.code.isdigit()):
            raise ReferenceDataError(f"{_PROVINCES_FILE}: bad code {province.code!r}")
        if province.code in provinces:
            raise ReferenceDataError(f"{_PROVINCES_FILE}: duplicate code {province.code}")
        if province.region not in REGIONS:
            raise ReferenceDataError(f"{_PROVINCES_FILE}: unknown region {province.region!r}")
        if province.population <= 0:
            raise ReferenceDataError(f"{_PROVINCES_FILE}: population of {province.code} <= 0")
        provinces[province.code] = province
    if len(provinces) != _EXPECTED_PROVINCES:
        raise ReferenceDataError(
            f"{_PROVINCES_FILE}: {len(provinces)} provinces, expected {_EXPECTED_PROVINCES}"
        )
    return provinces


def _load_age_shares() -> dict[str, Fraction]:
    shares: dict[str, Fraction] = {}
    for row in _rows(_AGE_FILE):
        try:
            band = row["band"].strip()
            # Decimal -> Fraction keeps the six published decimals exact.
            share = Fraction(Decimal(row["share"].strip()))
        except (KeyError, InvalidOperation, AttributeError) as e:
            raise ReferenceDataError(f"{_AGE_FILE}: bad row {row!r}") from e
        if band in shares or not 0 <= share <= 1:
            raise ReferenceDataError(f"{_AGE_FILE}: bad band {band!r} or share {share}")
        shares[band] = share
    if not shares or sum(shares.values()) != 1:
        raise ReferenceDataError(f"{_AGE_FILE}: shares must sum to exactly 1")
    return shares


def _apportion(total: int, shares: Mapping[str, Fraction]) -> dict[str, int]:
    """Split ``total`` by ``shares`` into integers that add up to ``total`` exactly.

    Largest-remainder (Hamilton) method; ties of the remainder go to the band listed first,
    so the split is deterministic.
    """
    quotas = {band: total * share for band, share in shares.items()}
    parts = {band: int(quota) for band, quota in quotas.items()}  # floor: quotas are >= 0
    left = total - sum(parts.values())
    order = sorted(shares, key=lambda b: (-(quotas[b] - parts[b]), list(shares).index(b)))
    for band in order[:left]:
        parts[band] += 1
    return parts


_PROVINCES = _load_provinces()
_AGE_SHARES = _load_age_shares()
_BAND_POPULATION: dict[str, dict[str, int]] = {
    code: _apportion(p.population, _AGE_SHARES) for code, p in _PROVINCES.items()
}
_BAND_POPULATION[NATION] = {
    band: sum(_BAND_POPULATION[code][band] for code in _PROVINCES) for band in _AGE_SHARES
}

#: The 63 provinces by GSO code, read-only.
PROVINCES: Mapping[str, Province] = MappingProxyType(_PROVINCES)

#: National share of each age band (2019 census), in the file's band order, read-only.
AGE_SHARES: Mapping[str, float] = MappingProxyType(
    {band: float(share) for band, share in _AGE_SHARES.items()}
)


def age_bands() -> tuple[str, ...]:
    """The age bands of the reference data, in order.

    Coverage checks these against its own ``AGE_BANDS`` ("Dose coverage": 0-11, 12-17,
    18-49, 50-64, 65+), so a changed file cannot silently misalign the denominators.
    """
    return tuple(_AGE_SHARES)


def is_province(code: str) -> bool:
    """Whether ``code`` is one of the 63 GSO province codes (residence, venue, site province)."""
    return code in _PROVINCES


def is_area(area: str) -> bool:
    """Whether ``area`` is a coverage area: the nation (``"VN"``) or a province code."""
    return area == NATION or area in _PROVINCES


def population(area: str, age_band: str | None = None) -> int:
    """Population denominator of ``area`` ("VN" or a province code), optionally of one band.

    Why: "Dose coverage" divides counts per hundred of the population from reference data.
    Without a band this is the census population (the nation: 96,208,984). With a band it
    is the approximation described in the module docstring: a province's population times
    the national band share, apportioned so the bands add up to the province; the nation's
    band population is the sum over provinces.

    Raises :class:`UnknownArea` or :class:`UnknownAgeBand`.
    """
    if not is_area(area):
        raise UnknownArea(f"unknown area {area!r}: expected {NATION!r} or a province code")
    bands = _BAND_POPULATION[area]
    if age_band is None:
        return sum(bands.values())
    try:
        return bands[age_band]
    except KeyError as e:
        raise UnknownAgeBand(
            f"unknown age band {age_band!r}: expected one of {tuple(bands)}"
        ) from e
