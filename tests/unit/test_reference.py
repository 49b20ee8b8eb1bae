"""Reference data bundled in the domain package: provinces, populations, age structure."""

from __future__ import annotations

from importlib import resources

import pytest

from domain import coverage, reference
from domain.reference import NATION, PROVINCES, UnknownAgeBand, UnknownArea, population

CENSUS_2019 = 96_208_984


def test_63_provinces_summing_to_the_2019_census() -> None:
    assert len(PROVINCES) == 63
    assert sum(p.population for p in PROVINCES.values()) == CENSUS_2019
    assert population(NATION) == CENSUS_2019


def test_known_rows() -> None:
    assert PROVINCES["01"].name == "Hà Nội"
    assert PROVINCES["01"].population == 8_053_663
    assert PROVINCES["79"].population == 8_993_082  # largest
    assert PROVINCES["06"].population == 313_905  # smallest
    assert PROVINCES["79"].name_ascii.isascii()
    assert min(PROVINCES.values(), key=lambda p: p.population).code == "06"
    assert max(PROVINCES.values(), key=lambda p: p.population).code == "79"


def test_codes_and_regions_are_well_formed() -> None:
    for code, province in PROVINCES.items():
        assert code == province.code
        assert len(code) == 2 and code.isdigit()
        assert province.region in reference.REGIONS
        assert province.name_ascii.isascii()
    assert {p.region for p in PROVINCES.values()} == set(reference.REGIONS)


def test_regional_totals_match_the_gso_release() -> None:
    by_region: dict[str, int] = {}
    for p in PROVINCES.values():
        by_region[p.region] = by_region.get(p.region, 0) + p.population
    assert by_region["Red River Delta"] == 22_543_607
    assert by_region["Central Highlands"] == 5_842_681


def test_age_shares_sum_to_one_and_match_the_coverage_bands() -> None:
    assert reference.age_bands() == coverage.AGE_BANDS
    assert tuple(reference.AGE_SHARES) == coverage.AGE_BANDS
    assert sum(reference.AGE_SHARES.values()) == pytest.approx(1.0, abs=1e-9)
    assert all(0 < share < 1 for share in reference.AGE_SHARES.values())


@pytest.mark.parametrize("area", [NATION, *PROVINCES])
def test_band_denominators_add_up_to_the_area(area: str) -> None:
    bands = [population(area, band) for band in coverage.AGE_BANDS]
    assert sum(bands) == population(area)
    assert all(b > 0 for b in bands)


def test_band_denominators_follow_the_national_shares() -> None:
    for band, share in reference.AGE_SHARES.items():
        for code, province in PROVINCES.items():
            assert abs(population(code, band) - province.population * share) < 1
        # the nation is the sum of its provinces, so it differs from N x share by rounding only
        assert abs(population(NATION, band) - CENSUS_2019 * share) <= len(PROVINCES)
        assert population(NATION, band) == sum(population(c, band) for c in PROVINCES)


def test_unknown_area_and_band() -> None:
    with pytest.raises(UnknownArea, match="'99'"):
        population("99")
    with pytest.raises(UnknownAgeBand, match="18-64"):
        population("01", "18-64")
    assert reference.is_province("79")
    assert not reference.is_province(NATION)
    assert reference.is_area(NATION)
    assert not reference.is_area("1")


def test_data_travels_inside_the_package() -> None:
    folder = resources.files("domain.reference_data")
    for name in ("vn_provinces_2021.csv", "vn_age_structure_2019.csv", "SOURCES.md"):
        assert folder.joinpath(name).is_file()


def test_reference_mappings_are_read_only() -> None:
    with pytest.raises(TypeError):
        PROVINCES["00"] = PROVINCES["01"]  # type: ignore[index]
