"""Every operation of the read API, by area; each area declares its own next to its handlers.

- :mod:`~api.routes.citizen` (no token): a test result by its lookup code;
- :mod:`~api.routes.me` (a person's own token): my visits, results, doses, exposure notices
  and their live stream;
- :mod:`~api.routes.certificates` (public; the person's token to issue): vaccination
  certificates, their public keys and verification;
- :mod:`~api.routes.testing` (health staff): a sample, testing turnaround;
- :mod:`~api.routes.coverage` (MOH, provinces): coverage, its series, daily doses, a person's
  vaccinations;
- :mod:`~api.routes.epidemiology` (MOH, provinces): cases, positivity, syndromic counts and Rt
  per province and day, JSON and CSV;
- :mod:`~api.routes.exposure` (tracers): alerts and their live stream, a person's exposures and
  visits, a venue's exposure windows, exposure sites, clusters;
- :mod:`~api.routes.chains` (tracers, provinces, MOH): a province's chains of transmission;
- :mod:`~api.routes.access` (MOH): the audit log, grants;
- :mod:`~api.routes.ops` (public): healthz, readyz, metrics, openapi.json;
- :mod:`~api.routes.dashboard` (MOH): the dashboard's aggregates (and its page, not API);
- :mod:`~api.routes.vaccination` (MOH, provinces, public): the vaccination programme.

The same declarations build the Starlette routes and the OpenAPI document
(:func:`api.app.create_app`), so the document cannot drift from what is served; every request
goes through :func:`api.edge.dispatch`. The order below is the order of the document.
"""

from __future__ import annotations

from api.edge import Operation, page_params
from api.rates import OffsetReader
from api.routes import (
    access,
    certificates,
    chains,
    citizen,
    coverage,
    dashboard,
    epidemiology,
    exposure,
    me,
    ops,
    testing,
    vaccination,
)

__all__ = ["all_operations", "build_operations"]


def build_operations(page_size: int, max_page_size: int) -> tuple[Operation, ...]:
    """The read API's own operations; page sizes come from the config (they appear in the
    document)."""
    paging = page_params(page_size, max_page_size)
    sample, turnaround = testing.operations()
    return (
        *citizen.operations(),
        *me.operations(),
        *certificates.operations(),
        sample,
        *coverage.operations(),
        turnaround,
        *epidemiology.operations(),
        *exposure.operations(paging),
        *chains.operations(),
        *access.operations(paging),
        *ops.operations(),
    )


def all_operations(
    page_size: int, max_page_size: int, offsets: OffsetReader | None = None
) -> tuple[Operation, ...]:
    """Every operation the app routes and documents: its own, the dashboard's and the
    programme's (``offsets``: where the dashboard's rates come from; tests pass a fake)."""
    return (
        *build_operations(page_size, max_page_size),
        *dashboard.operations(offsets),
        *vaccination.operations(max_page_size),
    )
