"""``POST /v1/samples`` (a tube at a sampling site) and ``POST /v1/samples/{id}/result`` (a lab)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from covidtech.tokens import ScopeKind
from covidtech.web.problems import FieldError, Problem, validation_problem
from domain.results import (
    InvalidResult,
    SampleMember,
    TestResult,
    apply_result,
    lookup_code_hash,
    new_lookup_code,
    validate_members,
)
from producers.events import sample_collected, sample_resulted
from producers.openapi.parts import created, id_schema, path_param, ref, written
from producers.requests.common import SAMPLE_ID
from producers.requests.testing import parse_result, parse_sample
from producers.routes.common import json_response, read_command, service
from producers.routes.edge import area, claims_of, kinds
from producers.service import (
    fingerprint,
    read_json,
    require_province,
    scope_problem,
    scoped_id,
)


async def collect_sample(request: Request) -> Response:
    """Record a tube: one person or a pool of 2-10 (scope ``site:<id>@<province>`` of the
    sample's province).

    The tube's barcode is the sample id. 201 with one random lookup code per person, shown
    once: only their SHA-256 goes into SampleCollected. Re-posting the same collection (same
    body, same site) while this instance remembers it returns the same codes (200
    ``duplicate``); a sample id already collected otherwise answers 409.
    """
    svc = service(request)
    claims = claims_of(request)
    sample = await read_command(request, parse_sample, svc.qr, svc.now(), svc.limits)
    site_id = scoped_id(claims, ScopeKind.SITE, sample.site_id, "site_id")
    require_province(claims, ScopeKind.SITE, site_id, sample.province, "province")
    key = f"samples/{sample.sample_id}.collected"
    exists = Problem(
        "sample-exists",
        f"sample {sample.sample_id} was already collected; use a new tube",
        errors=[FieldError("sample_id", "sample-exists", "already collected")],
    )
    if not svc.knows(key) and svc.samples.get(sample.sample_id) is not None:
        raise exists

    async def write() -> tuple[str, ...]:
        codes = tuple(new_lookup_code() for _ in sample.members)
        hashes = [lookup_code_hash(code) for code in codes]
        validate_members(
            SampleMember(m.person_id, h, m.symptom_onset)
            for m, h in zip(sample.members, hashes, strict=True)
        )
        await svc.produce(sample_collected(sample, site_id, hashes))
        svc.samples.collected(
            sample.sample_id,
            site_id,
            sample.province,
            sample.test_type,
            sample.collected_at,
            len(sample.members),
            sample.lab_id,
        )
        return codes

    outcome = await svc.write_once(
        key, fingerprint(sample, site_id), write, conflict=lambda: exists
    )
    return json_response(
        200 if outcome.duplicate else 201,
        {
            "sample_id": sample.sample_id,
            "site_id": site_id,
            "status": "duplicate" if outcome.duplicate else "accepted",
            "members": [
                {"person_id": m.person_id, "lookup_code": code}
                for m, code in zip(sample.members, outcome.value, strict=True)
            ],
        },
        headers={"Location": f"/v1/samples/{sample.sample_id}"},
    )


async def record_result(request: Request) -> Response:
    """A lab's result for a whole tube (scope ``lab:<id>@<province>``): a sample of that
    province, or one the site sent to this lab (``lab_id`` at collection); otherwise 403.

    404 for a sample this API does not know (after catching up with the ``samples`` topic),
    409 if it already has a different result, 200 ``duplicate`` for the same result again,
    202 once SampleResulted is acknowledged.
    """
    svc = service(request)
    claims = claims_of(request)
    sample_id = request.path_params["sample_id"]
    body = await read_json(request, svc.config.max_body_bytes)
    now = svc.now()
    errors: list[FieldError] = []
    req = parse_result(body, errors, now, svc.limits)
    if req is None:
        raise validation_problem(errors)
    lab_id = scoped_id(claims, ScopeKind.LAB, req.lab_id, "lab_id")
    resulted_at = req.resulted_at or now
    key = f"samples/{sample_id}.resulted"

    def conflict(recorded: TestResult | None = None) -> Problem:
        said = f" ({recorded.value})" if recorded else ""
        return Problem(
            "result-conflict",
            f"sample {sample_id} already has a different result{said}; "
            "results are never overwritten",
            errors=[FieldError("result", "result-conflict", "differs from the recorded result")],
            extra={"recorded_result": recorded.value} if recorded else {},
        )

    def answer(status: int, duplicate: bool) -> Response:
        return json_response(
            status,
            {
                "sample_id": sample_id,
                "result": req.result.value,
                "status": "duplicate" if duplicate else "accepted",
            },
        )

    known = await svc.sample(sample_id) if SAMPLE_ID.fullmatch(sample_id) else None
    if known is None:
        raise Problem("unknown-sample", f"no sample {sample_id[:64]!r} was collected")
    province = known.sample.province
    if known.addressed_to != lab_id and province not in claims.provinces(ScopeKind.LAB, lab_id):
        raise scope_problem(
            f"lab:{lab_id}@{province}",
            "lab_id",
            f"lab {lab_id} may result samples of its province(s) and samples sent to it; "
            f"this one is from province {province}",
        )
    if not svc.knows(key):
        if known.result is not None:
            if known.result is not req.result:
                raise conflict(known.result)
            return answer(200, True)
        try:
            apply_result(known.sample, req.result, resulted_at, lab_id)
        except InvalidResult as e:
            field = "resulted_at" if req.resulted_at else "result"
            raise validation_problem(
                [FieldError(field, "result-before-collection", str(e))]
            ) from None

    async def write() -> str:
        await svc.produce(sample_resulted(sample_id, req.result.value, resulted_at, lab_id))
        svc.samples.resulted(sample_id, req.result, resulted_at, lab_id)
        return req.result.value

    def recorded_conflict() -> Problem:
        known = svc.samples.get(sample_id)
        return conflict(known.result if known is not None else None)

    outcome = await svc.write_once(key, fingerprint(req.result), write, conflict=recorded_conflict)
    return answer(200 if outcome.duplicate else 202, outcome.duplicate)


_AREA = area("samples", kinds(ScopeKind.SITE), errors=(409,))

OPERATIONS = (
    _AREA.post(
        "/v1/samples",
        "collect_sample",
        "Record a sample (one person or a pool of 2-10)",
        collect_sample,
        who="site:<id>@<the sample's province>",
        body=ref("Sample"),
        answers=created(
            "Collected; lookup codes shown once.", "Same collection again.", "SampleCollected"
        ),
    ),
    _AREA.post(
        "/v1/samples/{sample_id}/result",
        "record_result",
        "Record a lab result",
        record_result,
        scopes=kinds(ScopeKind.LAB),
        who="lab:<id>@<the sample's province>, or lab:<id>@<any> for a sample sent to it",
        body=ref("Result"),
        answers=written("The same result again (idempotent)."),
        errors=(404, 409),
        parameters=(path_param("sample_id", id_schema(SAMPLE_ID.pattern, "")),),
    ),
)
