"""Testing for health staff: one sample and its result, and turnaround per lab and province."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.responses import Response

from api import auth
from api.edge import AGGREGATE, Area, Ctx, Operation, area_name, check_area, day_range
from api.params import area_param, date_param
from api.problems import Problem
from api.render import iso_or_none, json_response
from projections import queries

__all__ = ["MAX_TURNAROUND_DAYS", "get_sample", "get_turnaround", "operations"]

#: Longest turnaround report (a national one reads 63 partitions per day).
MAX_TURNAROUND_DAYS = 31


async def get_sample(ctx: Ctx) -> Response:
    sample_id = ctx.params["sample_id"]
    row = await queries.sample(ctx.services.store, sample_id)
    if row is None or not ctx.must_reach().allows(row["province"]):
        raise Problem("not-found", "no such sample in your scope")
    await ctx.audit(f"sample:{sample_id}", ())
    count = row["member_count"] or 0
    return json_response(
        {
            "sample_id": row["sample_id"],
            "site_id": row["site_id"],
            "province": row["province"],
            "test_type": row["test_type"],
            "collected_at": iso_or_none(row["collected_at"]),
            "member_count": count,
            "pooled": count > 1,
            "state": row["result"] or "PENDING",
            "resulted_at": iso_or_none(row["resulted_at"]),
            "lab_id": row["lab_id"],
            "turnaround_seconds": row["turnaround_seconds"],
        }
    )


async def get_turnaround(ctx: Ctx) -> Response:
    area = ctx.params["area"]
    check_area(ctx, area)
    start, end = day_range(ctx, 7, (MAX_TURNAROUND_DAYS, "turnaround is reported"))
    services = ctx.services
    hours = services.config.pending_alarm_hours
    now = ctx.now
    # Minute resolution: answers computed within the same minute can be shared.
    late_before = (now - timedelta(hours=hours)).replace(second=0, microsecond=0)

    async def compute() -> dict[str, Any]:
        report = await queries.turnaround(
            services.store, queries.provinces_of(area), start, end, late_before
        )

        def stats(s: queries.TurnaroundStats) -> dict[str, Any]:
            return dict(s.__dict__)

        return {
            "area": area,
            "area_name": area_name(area),
            "from": start.isoformat(),
            "to": end.isoformat(),
            "overall": stats(report.overall),
            "by_lab": [{"lab_id": k, **stats(v)} for k, v in report.by_lab.items()],
            "by_province": [{"province": k, **stats(v)} for k, v in report.by_province.items()],
            "pending_late": {
                "hours": hours,
                "count": report.pending_late,
                "oldest_collected_at": iso_or_none(report.oldest_pending_collected_at),
                "by_province": [
                    {"province": k, "count": v} for k, v in report.pending_late_by_province.items()
                ],
                "by_site": [
                    {"site_id": k, "count": v} for k, v in report.pending_late_by_site.items()
                ],
            },
        }

    return await ctx.aggregate(("turnaround", area, start, end, late_before), compute)


def operations() -> tuple[Operation, ...]:
    """``getSample`` and ``getTurnaround`` (apart in the document: coverage stands between)."""
    area = Area("health staff", auth.MOH_PROVINCE)
    return (
        area.get(
            "/v1/samples/{sample_id}",
            "getSample",
            "A sample and its result",
            get_sample,
            response="Sample",
            audited=True,
            description="province:<P> sees samples collected in P (others are 404). Audited.",
        ),
        area.get(
            "/v1/testing/turnaround",
            "getTurnaround",
            "Turnaround percentiles and samples pending too long, per lab and province",
            get_turnaround,
            params=(
                area_param(required=True),
                date_param("from", "First local day of results (default: to - 6 days)."),
                date_param("to", "Last day (default today)."),
            ),
            response="Turnaround",
            **AGGREGATE,
        ),
    )
