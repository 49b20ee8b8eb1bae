"""The response bodies of the read API's OpenAPI document, by name (``components.schemas``).

Responses are strict (``additionalProperties: false``) so the fuzzer's conformance check catches
any field the document does not promise. An operation names its body by key
(``response="Result"`` in its declaration); :mod:`api.openapi` builds the document around them.
"""

from __future__ import annotations

from typing import Any

from domain.coverage import AGE_BANDS

__all__ = ["INT", "SCHEMAS", "STR", "ref"]

STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
DAY: dict[str, Any] = {"type": "string", "format": "date"}


def _null(schema: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    out["type"] = [schema["type"], "null"]
    return out


def _obj(props: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": [k for k in props if k not in optional],
        "additionalProperties": False,
    }


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _page(item: str) -> dict[str, Any]:
    return _obj({"items": _array(ref(item)), "next_page_token": _null(STR)})


_FIGURES: dict[str, Any] = {
    "population": INT,
    "people_vaccinated": INT,
    "people_fully_vaccinated": INT,
    "total_boosters": INT,
    "total_doses": INT,
    "people_vaccinated_per_hundred": NUM,
    "people_fully_vaccinated_per_hundred": NUM,
    "total_boosters_per_hundred": NUM,
    "total_doses_per_hundred": NUM,
    "drop_out": {**_null(NUM), "description": "(vaccinated - fully) / vaccinated; null if none"},
}
_BAND = {"type": "string", "enum": ["all", "18+", *AGE_BANDS]}
_STATS: dict[str, Any] = {
    "count": INT,
    "p50": _null(NUM),
    "p90": _null(NUM),
    "p99": _null(NUM),
    "mean": _null(NUM),
    "max": _null(NUM),
}
#: A dose of a person's record (the person's own, or a province's view with its residence).
_DOSE = {
    "dose_id": STR,
    "administered_at": TIME,
    "vaccine": _null(STR),
    "vaccine_name": _null(STR),
    "site_id": _null(STR),
}

_ALERT = _obj(
    {
        "alert_id": STR,
        "province": STR,
        "venue_id": STR,
        "case_person_id": STR,
        "contact_person_id": STR,
        "contact_visit_start": TIME,
        "contact_visit_end": _null(TIME),
        "overlap_seconds": _null(INT),
        "risk": _null({"type": "string", "enum": ["HIGH", "LOW", None]}),
        "status": _null({"type": "string", "enum": ["ACTIVE", "WITHDRAWN", None]}),
        "version": {**INT, "description": "Stream events only: the alert's version."},
    },
    optional=("version",),
)
_GRANT: dict[str, Any] = {
    "grant_id": STR,
    "token_id": _null(STR),
    "agency": _null(STR),
    "scopes": _array(STR),
    "purpose": _null(STR),
    "granted_by": _null(STR),
    "granted_at": _null(TIME),
    "expires_at": _null(TIME),
    "status": {"type": "string", "enum": ["active", "expired", "revoked"]},
    "revoked_at": _null(TIME),
    "revoked_by": _null(STR),
    "revoke_reason": _null(STR),
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details; `type` is stable per error class.",
        "properties": {
            "type": STR,
            "title": STR,
            "status": INT,
            "detail": STR,
            "instance": STR,
            "parameter": STR,
            "errors": _array(_obj({"field": STR, "message": STR})),
            "checks": {"type": "object", "additionalProperties": {"type": "boolean"}},
        },
        "required": ["type", "title", "status"],
    },
    "Result": _obj(
        {
            "state": {
                "type": "string",
                "enum": ["PENDING", "NEGATIVE", "POSITIVE", "INVALID", "POOL_POSITIVE_RETEST"],
            },
            "test_type": _null(STR),
            "collected_at": _null(TIME),
            "resulted_at": _null(TIME),
        }
    ),
    "Sample": _obj(
        {
            "sample_id": STR,
            "site_id": _null(STR),
            "province": _null(STR),
            "test_type": _null(STR),
            "collected_at": _null(TIME),
            "member_count": INT,
            "pooled": {"type": "boolean"},
            "state": STR,
            "resulted_at": _null(TIME),
            "lab_id": _null(STR),
            "turnaround_seconds": _null(INT),
        }
    ),
    "Coverage": _obj(
        {
            "area": STR,
            "area_name": STR,
            "date": DAY,
            "age_band": _BAND,
            **_FIGURES,
            "by_age_band": _array(_obj({"age_band": _BAND, **_FIGURES})),
        },
        optional=("by_age_band",),
    ),
    "CoverageSeries": _obj(
        {
            "area": STR,
            "area_name": STR,
            "age_band": _BAND,
            "from": DAY,
            "to": DAY,
            "points": _array(_obj({"date": DAY, **_FIGURES})),
        }
    ),
    "DosesDaily": _obj(
        {
            "area": STR,
            "area_name": STR,
            "age_band": _BAND,
            "from": DAY,
            "to": DAY,
            "days": _array(
                _obj(
                    {
                        "date": DAY,
                        "first_doses": INT,
                        "completions": INT,
                        "boosters": INT,
                        "doses": INT,
                    }
                )
            ),
            "total": _obj({"first_doses": INT, "completions": INT, "boosters": INT, "doses": INT}),
        }
    ),
    "VaccinationRecord": _obj(
        {
            "person_id": STR,
            "province": STR,
            "doses": _array(_obj({**_DOSE, "residence_province": _null(STR)})),
            "status": {
                "oneOf": [
                    {"type": "null"},
                    _obj(
                        {
                            "age_band": STR,
                            "first_dose_date": DAY,
                            "completed_date": _null(DAY),
                            "fully_vaccinated": {"type": "boolean"},
                            "boosters": INT,
                        }
                    ),
                ]
            },
        }
    ),
    "Turnaround": _obj(
        {
            "area": STR,
            "area_name": STR,
            "from": DAY,
            "to": DAY,
            "overall": _obj(_STATS),
            "by_lab": _array(_obj({"lab_id": STR, **_STATS})),
            "by_province": _array(_obj({"province": STR, **_STATS})),
            "pending_late": _obj(
                {
                    "hours": INT,
                    "count": INT,
                    "oldest_collected_at": _null(TIME),
                    "by_province": _array(_obj({"province": STR, "count": INT})),
                    "by_site": _array(_obj({"site_id": STR, "count": INT})),
                }
            ),
        }
    ),
    "Alert": _ALERT,
    "AlertPage": _page("Alert"),
    "Visit": _obj(
        {
            "venue_id": STR,
            "venue_province": _null(STR),
            "visit_start": TIME,
            "visit_end": _null(TIME),
        }
    ),
    "VisitPage": _page("Visit"),
    "Me": _obj(
        {
            "person_id": STR,
            "province": _null(STR),
            "district": _null(STR),
            "birth_year": _null(INT),
            "registered_at": _null(TIME),
        }
    ),
    "MyVisits": _obj(
        {
            "since": TIME,
            "items": _array(
                _obj(
                    {
                        "venue_id": STR,
                        "venue_name": _null(STR),
                        "venue_province": _null(STR),
                        "visit_start": TIME,
                        "visit_end": _null(TIME),
                    }
                )
            ),
        }
    ),
    "MyResults": _obj(
        {
            "items": _array(
                _obj(
                    {
                        "sample_id": STR,
                        "test_type": _null(STR),
                        "state": _null(STR),
                        "collected_at": TIME,
                        "resulted_at": _null(TIME),
                    }
                )
            )
        }
    ),
    "MyDoses": _obj({"items": _array(_obj(_DOSE))}),
    "Notice": _obj(
        {
            "notice_id": STR,
            "venue_id": STR,
            "venue_name": _null(STR),
            "venue_address": _null(STR),
            "province": STR,
            "day": DAY,
            "visit_start": TIME,
            "visit_end": _null(TIME),
            "risk": {"type": "string", "enum": ["HIGH", "LOW"]},
            "status": {"type": "string", "enum": ["ACTIVE", "WITHDRAWN"]},
            "advice": STR,
        }
    ),
    "NoticeList": _obj({"items": _array(ref("Notice"))}),
    "Window": _obj({"window_start": TIME, "window_end": TIME}),
    "ExposureWindows": _obj(
        {
            "venue_id": STR,
            "province": STR,
            "name": _null(STR),
            "address": _null(STR),
            "cases": INT,
            "windows": _array(ref("Window")),
        }
    ),
    "ExposureSite": _obj(
        {
            "day": DAY,
            "province": STR,
            "venue_id": STR,
            "venue_name": _null(STR),
            "address": _null(STR),
            "cases": INT,
            "windows": _array(ref("Window")),
        }
    ),
    "ExposureSitePage": _page("ExposureSite"),
    "Cluster": _obj(
        {
            "province": STR,
            "venue_id": STR,
            "case_count": INT,
            "case_person_ids": _array(STR),
            "first_window_start": _null(TIME),
            "last_window_start": _null(TIME),
        }
    ),
    "ClusterPage": _page("Cluster"),
    "ChainCase": _obj(
        {
            "case_id": STR,
            "person_id": STR,
            "sample_id": STR,
            "collected_at": TIME,
            "sample_day": DAY,
            "generation": INT,
        }
    ),
    "ChainLink": _obj(
        {
            "alert_id": STR,
            "source_case_id": STR,
            "case_id": STR,
            "source_person_id": STR,
            "case_person_id": STR,
            "venue_id": STR,
            "exposure_at": TIME,
        }
    ),
    "ChainVenue": _obj({"venue_id": STR, "name": _null(STR), "links": INT}),
    "ChainGraph": _obj(
        {
            "province": STR,
            "from": DAY,
            "to": DAY,
            "venue_id": _null(STR),
            "generations": INT,
            "truncated": {"type": "boolean"},
            "cases": _array(ref("ChainCase")),
            "links": _array(ref("ChainLink")),
            "venues": _array(ref("ChainVenue")),
        }
    ),
    "AuditRecord": _obj(
        {
            "audit_id": STR,
            "read_at": TIME,
            "actor": _null(STR),
            "grant_id": _null(STR),
            "token_id": _null(STR),
            "scopes": _array(STR),
            "method": _null(STR),
            "route": _null(STR),
            "subject": _null(STR),
            "person_ids": _array(STR),
            "client_address": _null(STR),
            "status": _null(INT),
        }
    ),
    "AuditPage": _page("AuditRecord"),
    "GrantRequest": {
        **_obj(
            {
                "agency": {"type": "string", "minLength": 1, "maxLength": 128},
                "scopes": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 16,
                    "items": {"type": "string", "pattern": "^[a-z-]+(:[A-Za-z0-9_-]{1,64})?$"},
                },
                "purpose": {"type": "string", "minLength": 1, "maxLength": 500},
                "expires_at": TIME,
            }
        ),
        "example": {
            "agency": "So Y te TP. Ho Chi Minh",
            "scopes": ["province:79", "tracer:79"],
            "purpose": "Contact tracing, Aug 2021 outbreak",
            "expires_at": "2021-12-31T17:00:00Z",
        },
    },
    "Grant": _obj(_GRANT),
    "IssuedGrant": _obj({**_GRANT, "token": STR}),
    "GrantPage": _page("Grant"),
    "CertificateKeys": _obj(
        {
            "keys": _array(
                _obj(
                    {
                        "kid": STR,
                        "alg": {"type": "string", "enum": ["Ed25519"]},
                        "public_key": {**STR, "description": "base64 of the 32 raw bytes"},
                    }
                )
            )
        }
    ),
    "CertificateToVerify": {
        **_obj({"payload": {**STR, "description": "The QR payload, CT1:..."}}),
        "example": {"payload": "CT1:NLG*AE2EC7SG/ICGJBNF6OF63W5+/6746R80/ICGJBNF6OF63W5Q4"},
    },
    "CertificateVerification": _obj(
        {
            "valid": {"type": "boolean"},
            "reason": {
                "type": ["string", "null"],
                "enum": [
                    "malformed",
                    "unknown-version",
                    "unknown-key",
                    "bad-signature",
                    "not-yet-valid",
                    "expired",
                    None,
                ],
            },
            "detail": _null(STR),
            "claims": {"oneOf": [ref("CertificateClaims"), {"type": "null"}]},
        }
    ),
    "CertificateClaims": _obj(
        {
            "version": INT,
            "kid": STR,
            "issued_at": TIME,
            "expires_at": TIME,
            "subject": {**STR, "description": "The person's pseudonym"},
            "birth_year": INT,
            "doses": _array(
                _obj({"number": INT, "vaccine": STR, "vaccine_name": _null(STR), "date": DAY})
            ),
            "doses_to_complete": INT,
            "fully_vaccinated": {"type": "boolean"},
        }
    ),
    "Certificate": _obj(
        {
            "payload": {**STR, "description": "The QR payload, CT1:... (docs/certificates.md)"},
            "qr_png": {**STR, "description": "The payload's QR code, a PNG in base64"},
            "claims": ref("CertificateClaims"),
        }
    ),
    "Health": _obj({"status": STR}),
    "Ready": _obj(
        {"status": STR, "checks": {"type": "object", "additionalProperties": {"type": "boolean"}}}
    ),
}
