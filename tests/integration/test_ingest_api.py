"""The ingest API against the real broker: every route's happy path, checked in the topic.

Each test gets its own topics (the ``isolated`` fixture) and its own app instance, and reads
back what the API wrote: the record's key, type and fields.
"""

from __future__ import annotations

import base64
import io
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from PIL import Image

from covidtech.settings import Settings
from domain.qr import QrKind, QrSigner, QrSubject
from domain.results import lookup_code_hash
from domain.vaccines import VACCINES
from producers.app import create_app
from tests.integration.ingest_harness import (
    PROBLEM_JSON,
    bearer,
    client_id,
    events_with,
    read_topic,
    register_person,
    register_venue,
    rfc3339,
    scan_body,
    serving,
)
from tests.support import eventually_async

pytestmark = pytest.mark.integration

VENUE = {
    "name": "Phở <Hà Nội> & Co",
    "address": "12 Lê Lợi, Phường Bến Nghé",
    "province": "79",
    "district": "760",
    "category": "restaurant",
    "default_dwell_minutes": 45,
}


@pytest.fixture
async def api(isolated: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(create_app(isolated)) as client:
        yield client


def own(person: dict[str, Any]) -> dict[str, str]:
    """The person's own token, as registration answered it to the app."""
    return {"Authorization": f"Bearer {person['token']}"}


def scan(venue: dict[str, Any], person: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return scan_body(venue, person, ago=timedelta(minutes=1), **changes)


async def test_venue_registration_event_and_posters(
    api: httpx.AsyncClient, isolated: Settings
) -> None:
    venue = await register_venue(api, isolated, VENUE)
    venue_id = venue["venue_id"]
    assert QrSigner(isolated.secret).parse(venue["venue_qr"]) == QrSubject(QrKind.VENUE, venue_id)

    [(key, event)] = await read_topic(isolated, isolated.topic("venues"))
    assert key == venue_id.encode()
    assert event.name == "covidtech.checkin.VenueRegistered"
    assert event.record["event_id"] == f"{venue_id}.registered"
    assert {k: event.record[k] for k in VENUE} == {**VENUE, "name": "Phở <Hà Nội> & Co"}

    headers = bearer(isolated, "venue-admin:79")
    png = await api.get(venue["poster_png"], headers=headers)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert image.size == (1240, 1754)
    svg = await api.get(venue["poster_svg"], headers=headers)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.content)  # well-formed despite the markup characters in the name
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "Phở <Hà Nội> & Co" in texts and "12 Lê Lợi, Phường Bến Nghé" in texts
    assert b"&lt;H" in svg.content

    other_province = await api.get(venue["poster_png"], headers=bearer(isolated, "venue-admin:01"))
    assert other_province.status_code == 403
    missing = await api.get("/v1/venues/v_aaaaaaaaaaaaaaaaaaaa/poster.svg", headers=headers)
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM_JSON


async def test_idempotency_key_returns_the_same_venue(
    api: httpx.AsyncClient, isolated: Settings
) -> None:
    headers = {**bearer(isolated, "venue-admin:79"), "Idempotency-Key": "form-submit-1"}
    first = await api.post("/v1/venues", json=VENUE, headers=headers)
    second = await api.post("/v1/venues", json=VENUE, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["venue_id"] == second.json()["venue_id"]
    other = await api.post("/v1/venues", json={**VENUE, "name": "Other"}, headers=headers)
    assert other.status_code == 409
    assert len(await read_topic(isolated, isolated.topic("venues"))) == 1


async def test_person_registration(api: httpx.AsyncClient, isolated: Settings) -> None:
    person = await register_person(api, isolated)
    person_id = person["person_id"]
    assert QrSigner(isolated.secret).parse(person["person_qr"]) == QrSubject(
        QrKind.PERSON, person_id
    )
    qr_png = Image.open(io.BytesIO(base64.b64decode(person["person_qr_png"])))
    assert qr_png.format == "PNG" and qr_png.size[0] == qr_png.size[1]
    [(key, event)] = await read_topic(isolated, isolated.topic("people"))
    assert key == person_id.encode()
    assert event.name == "covidtech.people.PersonRegistered"
    assert event.record["event_id"] == f"{person_id}.registered"
    assert (event.record["province"], event.record["district"], event.record["birth_year"]) == (
        "79",
        "760",
        1985,
    )
    for scopes in (("site:s1@79",), ("institution:school-7",)):
        r = await api.post(
            "/v1/people",
            json={"province": "01", "district": "001"},
            headers=bearer(isolated, *scopes),
        )
        assert r.status_code == 201, (scopes, r.text)


async def test_person_scans_venue_once_even_when_retried(
    api: httpx.AsyncClient, isolated: Settings
) -> None:
    venue = await register_venue(api, isolated, VENUE)
    person = await register_person(api, isolated)
    body = scan(venue, person)
    before = datetime.now(UTC)
    first = await api.post("/v1/scans", json=body, headers=own(person))
    assert first.status_code == 202, first.text
    answer = first.json()
    assert answer.pop("person_status") in {"YELLOW", "UNKNOWN"}  # no facts: not vaccinated
    assert answer == {"scan_id": body["scan_id"], "status": "accepted"}
    retry = await api.post("/v1/scans", json=body, headers=own(person))
    assert retry.status_code == 200 and retry.json()["status"] == "duplicate"
    changed = await api.post("/v1/scans", json={**body, "direction": "OUT"}, headers=own(person))
    assert changed.status_code == 409 and changed.json()["field"] == "scan_id"

    [(key, event)] = await read_topic(isolated, isolated.topic("checkins"))
    assert key == person["person_id"].encode()
    r = event.record
    assert event.name == "covidtech.checkin.CheckInScanned"
    assert r["event_id"] == body["scan_id"]
    assert (r["person_id"], r["venue_id"]) == (person["person_id"], venue["venue_id"])
    assert (r["direction"], r["method"]) == ("IN", "PERSON_SCANNED_VENUE")
    assert (r["venue_province"], r["venue_dwell_minutes"], r["device_id"]) == ("79", 45, None)
    assert r["scanned_at"] == datetime.fromisoformat(body["scanned_at"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= r["received_at"] <= datetime.now(UTC)


async def test_staff_scan_the_person(api: httpx.AsyncClient, isolated: Settings) -> None:
    venue = await register_venue(api, isolated, VENUE)
    person = await register_person(api, isolated)
    body = scan(venue, person, direction="OUT", device_id="gate-2")
    r = await api.post("/v1/scans", json=body, headers=bearer(isolated, "venue-admin:79"))
    assert r.status_code == 202, r.text
    [(_, event)] = await read_topic(isolated, isolated.topic("checkins"))
    assert (event.record["method"], event.record["direction"], event.record["device_id"]) == (
        "STAFF_SCANNED_PERSON",
        "OUT",
        "gate-2",
    )


async def test_registration_gives_the_app_a_token_bound_to_that_person(
    api: httpx.AsyncClient, isolated: Settings
) -> None:
    person = await register_person(api, isolated)
    claims = isolated.token_signer().verify(person["token"], datetime.now(UTC))
    assert claims.subject == person["person_id"] and claims.person == person["person_id"]
    assert sorted(str(s) for s in claims.scopes) == sorted(person["scopes"])
    assert person["scopes"] == ["app", f"person:{person['person_id']}"]
    lifetime = claims.expires_at - claims.issued_at
    assert lifetime == timedelta(days=30)  # COVIDTECH_PERSON_TOKEN_TTL's default
    assert person["token_expires_at"] == rfc3339(claims.expires_at).replace(".000", "")

    # On someone's behalf (a sample site): no token; the person's app signs in with the QR.
    by_site = await api.post(
        "/v1/people",
        json={"province": "79", "district": "760"},
        headers=bearer(isolated, "site:s1@79"),
    )
    assert by_site.status_code == 201 and "token" not in by_site.json()
    signed_in = await api.post(
        "/v1/people/sessions",
        json={"person_qr": by_site.json()["person_qr"]},
        headers=bearer(isolated, "app"),
    )
    assert signed_in.status_code == 201, signed_in.text
    fresh = isolated.token_signer().verify(signed_in.json()["token"], datetime.now(UTC))
    assert fresh.person == by_site.json()["person_id"] == signed_in.json()["person_id"]
    # A forged QR signs nobody in; a venue's QR is not a person's.
    forged = await api.post(
        "/v1/people/sessions",
        json={"person_qr": person["person_qr"][:-2] + "aa"},
        headers=bearer(isolated, "app"),
    )
    assert forged.status_code == 422 and forged.json()["errors"][0]["code"] == "forged-qr"
    venue = await register_venue(api, isolated, VENUE)
    wrong = await api.post(
        "/v1/people/sessions",
        json={"person_qr": venue["venue_qr"]},
        headers=bearer(isolated, "app"),
    )
    assert wrong.status_code == 422 and wrong.json()["field"] == "person_qr"


async def test_a_person_token_places_its_person_only_and_staff_their_venue_only(
    api: httpx.AsyncClient, isolated: Settings
) -> None:
    venue, elsewhere = (
        await register_venue(api, isolated, VENUE),
        await register_venue(api, isolated, VENUE),
    )
    alice, bob = await register_person(api, isolated), await register_person(api, isolated)

    # Alice's token checks Alice in, and nobody else.
    assert (
        await api.post("/v1/scans", json=scan(venue, alice), headers=own(alice))
    ).status_code == 202
    r = await api.post("/v1/scans", json=scan(venue, bob), headers=own(alice))
    assert r.status_code == 403 and r.json()["type"].endswith(":insufficient-scope")
    assert r.json()["field"] == "person_qr"
    assert f'scope="person:{bob["person_id"]}"' in r.headers["www-authenticate"]
    explicit = scan(venue, bob, method="PERSON_SCANNED_VENUE")
    assert (await api.post("/v1/scans", json=explicit, headers=own(alice))).status_code == 403
    # ... nor as staff, nor in a batch (the item is refused, the others written).
    staff = scan(venue, bob, method="STAFF_SCANNED_PERSON")
    assert (await api.post("/v1/scans", json=staff, headers=own(alice))).status_code == 403
    batch = {"scans": [scan(venue, alice), scan(venue, bob)]}
    r = await api.post("/v1/scans", json=batch, headers=own(alice))
    assert r.status_code == 200 and [x["status"] for x in r.json()["results"]] == [
        "accepted",
        "rejected",
    ]
    # An app token bound to nobody places nobody.
    r = await api.post("/v1/scans", json=scan(venue, alice), headers=bearer(isolated, "app"))
    assert r.status_code == 403 and r.json()["type"].endswith(":insufficient-scope")
    # Her token declares for her only.
    declaration = {"person_qr": bob["person_qr"], "province": "79", "contact_with_case": False}
    r = await api.post("/v1/declarations", json=declaration, headers=own(alice))
    assert r.status_code == 403 and r.json()["field"] == "person_qr"

    # The venue's staff scan anyone at their venue, not at another one.
    gate = bearer(isolated, f"venue:{venue['venue_id']}@79")
    r = await api.post("/v1/scans", json=scan(venue, bob), headers=gate)
    assert r.status_code == 202, r.text
    r = await api.post("/v1/scans", json=scan(elsewhere, bob), headers=gate)
    assert r.status_code == 403 and r.json()["field"] == "venue_qr"
    assert f'scope="venue:{elsewhere["venue_id"]}@79"' in r.headers["www-authenticate"]
    # A venue scope naming the wrong province does not cover it either.
    wrong_province = bearer(isolated, f"venue:{venue['venue_id']}@01")
    r = await api.post("/v1/scans", json=scan(venue, bob), headers=wrong_province)
    assert r.status_code == 403
    # The province's venue administrator still scans at any venue of the province.
    for v in (venue, elsewhere):
        r = await api.post(
            "/v1/scans", json=scan(v, bob), headers=bearer(isolated, "venue-admin:79")
        )
        assert r.status_code == 202, r.text

    written = await read_topic(isolated, isolated.topic("checkins"))
    methods = sorted(
        (e.record["person_id"] == alice["person_id"], e.record["method"]) for _, e in written
    )
    assert methods == [
        (False, "STAFF_SCANNED_PERSON"),
        (False, "STAFF_SCANNED_PERSON"),
        (False, "STAFF_SCANNED_PERSON"),
        (True, "PERSON_SCANNED_VENUE"),
        (True, "PERSON_SCANNED_VENUE"),
    ]


async def test_scan_batch_answers_per_item_and_writes_only_accepted(
    api: httpx.AsyncClient, isolated: Settings
) -> None:
    venue = await register_venue(api, isolated, VENUE)
    person = await register_person(api, isolated)
    qr = QrSigner(isolated.secret)
    now = datetime.now(UTC)
    good = [scan(venue, person, scanned_at=rfc3339(now - timedelta(hours=h))) for h in (1, 2, 70)]
    forged = scan(venue, person, person_qr=person["person_qr"][:-2] + "aa")
    unknown_venue = scan(venue, person, venue_qr=qr.payload(QrKind.VENUE, "v_aaaaaaaaaaaaaaaaaaaa"))
    too_late = scan(venue, person, scanned_at=rfc3339(now - timedelta(hours=73)))
    missing = {k: v for k, v in scan(venue, person).items() if k != "direction"}
    items = [good[0], forged, good[1], unknown_venue, too_late, missing, good[2], good[0]]
    r = await api.post("/v1/scans", json={"scans": items}, headers=own(person))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (3, 1, 4)
    statuses = [(x["index"], x["scan_id"], x["status"]) for x in body["results"]]
    assert statuses == [
        (i, item["scan_id"], s)
        for i, (item, s) in enumerate(
            zip(
                items,
                [
                    "accepted",
                    "rejected",
                    "accepted",
                    "rejected",
                    "rejected",
                    "rejected",
                    "accepted",
                    "duplicate",
                ],
                strict=True,
            )
        )
    ]
    problems = {x["index"]: x["problem"] for x in body["results"] if x["status"] == "rejected"}
    assert {i: (p["type"].rsplit(":", 1)[1], p["field"]) for i, p in problems.items()} == {
        1: ("forged-qr", "scans[1].person_qr"),
        3: ("unknown-venue", "scans[3].venue_qr"),
        4: ("scan-too-late", "scans[4].scanned_at"),
        5: ("missing", "scans[5].direction"),
    }
    written = await read_topic(isolated, isolated.topic("checkins"))
    assert sorted(e.record["event_id"] for _, e in written) == sorted(g["scan_id"] for g in good)

    again = await api.post("/v1/scans", json={"scans": good}, headers=own(person))
    assert again.status_code == 200 and again.json()["duplicate"] == 3
    # Nothing of a batch done (every item rejected): 422 with the same per-item results.
    refused = await api.post("/v1/scans", json={"scans": [forged, too_late]}, headers=own(person))
    assert refused.status_code == 422 and refused.json()["type"].endswith(":validation-failed")
    assert refused.json()["rejected"] == 2
    assert [x["status"] for x in refused.json()["results"]] == ["rejected", "rejected"]
    assert len(await read_topic(isolated, isolated.topic("checkins"))) == 3


async def test_scan_at_a_venue_registered_by_another_instance(
    api: httpx.AsyncClient, isolated: Settings
) -> None:
    async with serving(create_app(isolated)) as other:
        venue = await register_venue(other, isolated, VENUE)
        person = await register_person(other, isolated)
    # This instance never saw the venue registered: the miss waits for its view of `venues`.
    r = await api.post("/v1/scans", json=scan(venue, person), headers=own(person))
    assert r.status_code == 202, r.text


async def test_health_declaration(api: httpx.AsyncClient, isolated: Settings) -> None:
    person = await register_person(api, isolated)
    body = {
        "declaration_id": client_id(),
        "person_qr": person["person_qr"],
        "province": "79",
        "symptoms": ["FEVER", "LOSS_OF_TASTE_OR_SMELL"],
        "contact_with_case": True,
        "travelled_from_province": "01",
    }
    first = await api.post("/v1/declarations", json=body, headers=bearer(isolated, "app"))
    again = await api.post("/v1/declarations", json=body, headers=bearer(isolated, "app"))
    assert (first.status_code, again.status_code) == (202, 200), first.text
    [(key, event)] = await read_topic(isolated, isolated.topic("declarations"))
    assert key == person["person_id"].encode()
    assert event.record["event_id"] == body["declaration_id"]
    assert event.record["symptoms"] == ["FEVER", "LOSS_OF_TASTE_OR_SMELL"]
    assert (event.record["contact_with_case"], event.record["travelled_from_province"]) == (
        True,
        "01",
    )


async def test_pooled_sample_codes_and_results(api: httpx.AsyncClient, isolated: Settings) -> None:
    people = [await register_person(api, isolated) for _ in range(3)]
    today = datetime.now(UTC)
    sample_id = f"HCM-{client_id()[:8]}"
    body = {
        "sample_id": sample_id,
        "province": "79",
        "test_type": "RAPID_ANTIGEN",
        "collected_at": rfc3339(today - timedelta(minutes=30)),
        "members": [
            {
                "person_qr": people[0]["person_qr"],
                "symptom_onset": (today - timedelta(days=2)).astimezone().date().isoformat(),
            },
            {"person_id": people[1]["person_id"]},
            {"person_qr": people[2]["person_qr"], "symptom_onset": None},
        ],
    }
    site = bearer(isolated, "site:hcm-07@79")
    r = await api.post("/v1/samples", json=body, headers=site)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["site_id"] == "hcm-07"
    codes = {m["person_id"]: m["lookup_code"] for m in created["members"]}
    assert list(codes) == [p["person_id"] for p in people] and len(set(codes.values())) == 3

    # The same collection again returns the same codes; another one under this tube is refused.
    again = await api.post("/v1/samples", json=body, headers=site)
    assert again.status_code == 200 and again.json()["members"] == created["members"]
    clash = await api.post("/v1/samples", json={**body, "test_type": "PCR"}, headers=site)
    assert clash.status_code == 409 and clash.json()["type"].endswith(":sample-exists")

    lab = bearer(isolated, "lab:pasteur@79")
    path = f"/v1/samples/{sample_id}/result"
    positive = await api.post(path, json={"result": "POSITIVE"}, headers=lab)
    assert positive.status_code == 202, positive.text
    same = await api.post(path, json={"result": "POSITIVE"}, headers=lab)
    assert same.status_code == 200 and same.json()["status"] == "duplicate"
    different = await api.post(path, json={"result": "NEGATIVE"}, headers=lab)
    assert different.status_code == 409
    assert (
        different.json()["type"].endswith(":result-conflict")
        and different.json()["field"] == "result"
    )
    unknown = await api.post(
        "/v1/samples/NO-SUCH-TUBE/result", json={"result": "NEGATIVE"}, headers=lab
    )
    assert unknown.status_code == 404 and unknown.json()["type"].endswith(":unknown-sample")

    records = await read_topic(isolated, isolated.topic("samples"))
    assert [e.name for _, e in records] == [
        "covidtech.testing.SampleCollected",
        "covidtech.testing.SampleResulted",
    ]
    assert {k for k, _ in records} == {sample_id.encode()}
    collected, resulted = (e.record for _, e in records)
    assert collected["event_id"] == f"{sample_id}.collected"
    assert (collected["site_id"], collected["province"], collected["test_type"]) == (
        "hcm-07",
        "79",
        "RAPID_ANTIGEN",
    )
    assert [m["lookup_code_sha256"] for m in collected["members"]] == [
        lookup_code_hash(c) for c in codes.values()
    ]
    assert (
        collected["members"][0]["symptom_onset"] is not None
        and collected["members"][1]["symptom_onset"] is None
    )
    raw = b"".join(repr(e.record).encode() for _, e in records)
    assert not any(
        code.encode() in raw or code.replace("-", "").encode() in raw for code in codes.values()
    )
    assert (resulted["result"], resulted["lab_id"], resulted["event_id"]) == (
        "POSITIVE",
        "pasteur",
        f"{sample_id}.resulted",
    )


async def test_result_for_a_sample_collected_through_another_instance(
    api: httpx.AsyncClient, isolated: Settings
) -> None:
    person = await register_person(api, isolated)
    sample_id = f"HN-{client_id()[:8]}"
    body = {
        "sample_id": sample_id,
        "province": "01",
        "test_type": "PCR",
        "collected_at": rfc3339(datetime.now(UTC)),
        "members": [{"person_qr": person["person_qr"]}],
    }
    assert (
        await api.post("/v1/samples", json=body, headers=bearer(isolated, "site:hn-1@01"))
    ).status_code == 201
    async with serving(create_app(isolated)) as other:
        lab = bearer(isolated, "lab:nihe@01")
        path = f"/v1/samples/{sample_id}/result"
        assert (await other.post(path, json={"result": "NEGATIVE"}, headers=lab)).status_code == 202

    # The first instance catches up with the topic before deciding: a different result is a
    # conflict at once (acknowledging it would be a lie, the log keeps the first result).
    r = await api.post(path, json={"result": "POSITIVE"}, headers=lab)
    assert r.status_code == 409, r.text
    assert r.json()["recorded_result"] == "NEGATIVE"
    again = await api.post(path, json={"result": "NEGATIVE"}, headers=lab)
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")


async def test_sites_and_labs_write_for_their_own_province_only(
    api: httpx.AsyncClient, isolated: Settings
) -> None:
    """Issue 13: ``site:s79`` recorded a sample for province 48, and any lab resulted any
    sample. A site writes samples and doses for the province(s) of its scopes; a lab results
    its province's samples and those sent to it."""
    person = await register_person(api, isolated)
    now = datetime.now(UTC)

    def tube(province: str, **more: Any) -> dict[str, Any]:
        return {
            "sample_id": f"T-{client_id()[:8]}",
            "province": province,
            "test_type": "PCR",
            "collected_at": rfc3339(now - timedelta(minutes=30)),
            "members": [{"person_qr": person["person_qr"]}],
            **more,
        }

    site_79 = bearer(isolated, "site:s79@79")
    elsewhere = await api.post("/v1/samples", json=tube("48"), headers=site_79)
    assert elsewhere.status_code == 403, elsewhere.text
    assert elsewhere.json()["type"].endswith(":insufficient-scope")
    assert elsewhere.json()["field"] == "province"
    assert 'scope="site:s79@48"' in elsewhere.headers["www-authenticate"]
    dose = {
        "dose_id": client_id(),
        "person_id": person["person_id"],
        "administered_at": rfc3339(now - timedelta(days=1)),
        "vaccine": "AZ",
        "birth_year": 1960,
        "residence_province": "48",
    }
    refused = await api.post("/v1/doses", json=dose, headers=site_79)
    assert refused.status_code == 403 and refused.json()["field"] == "residence_province"
    # A site of two provinces holds a scope for each.
    border = bearer(isolated, "site:s79@79", "site:s79@48")
    assert (await api.post("/v1/doses", json=dose, headers=border)).status_code == 202

    local, addressed, foreign = tube("79"), tube("01", lab_id="pasteur"), tube("01")
    for body, site in ((local, site_79), (addressed, "site:hn-2@01"), (foreign, "site:hn-2@01")):
        headers = site if isinstance(site, dict) else bearer(isolated, site)
        r = await api.post("/v1/samples", json=body, headers=headers)
        assert r.status_code == 201, r.text

    lab_79 = bearer(isolated, "lab:pasteur@79")
    for body in (local, addressed):
        r = await api.post(
            f"/v1/samples/{body['sample_id']}/result", json={"result": "NEGATIVE"}, headers=lab_79
        )
        assert r.status_code == 202, r.text
    r = await api.post(
        f"/v1/samples/{foreign['sample_id']}/result", json={"result": "NEGATIVE"}, headers=lab_79
    )
    assert r.status_code == 403 and r.json()["field"] == "lab_id", r.text
    assert 'scope="lab:pasteur@01"' in r.headers["www-authenticate"]
    lab_01 = bearer(isolated, "lab:nihe@01")
    r = await api.post(
        f"/v1/samples/{foreign['sample_id']}/result", json={"result": "NEGATIVE"}, headers=lab_01
    )
    assert r.status_code == 202, r.text

    records = await read_topic(isolated, isolated.topic("samples"))
    collected = {
        e.record["sample_id"]: e.record
        for _, e in records
        if e.name == "covidtech.testing.SampleCollected"
    }
    assert collected[addressed["sample_id"]]["lab_id"] == "pasteur"
    assert collected[local["sample_id"]]["lab_id"] is None
    resulted = sorted(
        (e.record["sample_id"], e.record["lab_id"])
        for _, e in records
        if e.name == "covidtech.testing.SampleResulted"
    )
    assert resulted == sorted(
        [
            (local["sample_id"], "pasteur"),
            (addressed["sample_id"], "pasteur"),
            (foreign["sample_id"], "nihe"),
        ]
    )


async def test_doses_single_and_batch(api: httpx.AsyncClient, isolated: Settings) -> None:
    person = await register_person(api, isolated)
    single_dose = next(v.code for v in VACCINES.values() if v.single_dose)
    two_dose = next(v.code for v in VACCINES.values() if not v.single_dose)

    def dose(**changes: Any) -> dict[str, Any]:
        return {
            "dose_id": client_id(),
            "person_id": person["person_id"],
            "administered_at": rfc3339(datetime.now(UTC) - timedelta(days=3)),
            "vaccine": two_dose,
            "birth_year": 1950,
            "residence_province": "79",
            **changes,
        }

    site = bearer(isolated, "site:hcm-vax-3@79")
    one = dose(vaccine=single_dose, person_qr=person["person_qr"], person_id=...)
    one = {k: v for k, v in one.items() if v is not ...}
    r = await api.post("/v1/doses", json=one, headers=site)
    assert r.status_code == 202, r.text
    assert (await api.post("/v1/doses", json=one, headers=site)).status_code == 200
    batch = [dose(), dose(vaccine="NOT_A_VACCINE"), dose(site_id="someone-else")]
    r = await api.post("/v1/doses", json={"doses": batch}, headers=site)
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == ["accepted", "rejected", "rejected"]
    assert r.json()["results"][1]["problem"]["field"] == "doses[1].vaccine"
    assert r.json()["results"][2]["problem"]["status"] == 403

    written = await read_topic(isolated, isolated.topic("doses"))
    assert sorted(e.record["dose_id"] for _, e in written) == sorted(
        [one["dose_id"], batch[0]["dose_id"]]
    )
    first = next(e.record for _, e in written if e.record["dose_id"] == one["dose_id"])
    assert {k for k, _ in written} == {person["person_id"].encode()}
    assert (first["event_id"], first["vaccine"], first["site_id"]) == (
        one["dose_id"],
        single_dose,
        "hcm-vax-3",
    )
    assert (first["birth_year"], first["residence_province"]) == (1950, "79")

    products = await api.get("/v1/vaccines", headers=site)
    assert products.status_code == 200
    assert {p["code"]: p["single_dose"] for p in products.json()["vaccines"]}[single_dose] is True


async def test_operational_routes(api: httpx.AsyncClient, isolated: Settings) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}

    async def ready() -> bool:
        return (await api.get("/readyz")).status_code == 200

    await eventually_async(ready, within=20, what="readiness")
    await register_person(api, isolated)
    metrics = (await api.get("/metrics")).text
    assert 'covidtech_ingest_requests_total{route="/v1/people",status="201"} 1.0' in metrics
    assert 'covidtech_events_produced_total{topic="people"} 1.0' in metrics
    assert "covidtech_ingest_request_duration_seconds_bucket" in metrics
    doc = (await api.get("/openapi.json")).json()
    assert doc["openapi"] == "3.1.0" and "/v1/scans" in doc["paths"]
    not_found = await api.get("/v2/nothing")
    assert not_found.status_code == 404 and not_found.headers["content-type"] == PROBLEM_JSON
    wrong_method = await api.get("/v1/scans")
    assert wrong_method.status_code == 405 and wrong_method.json()["type"].endswith(
        ":method-not-allowed"
    )
    assert wrong_method.headers["allow"] == "OPTIONS, POST"
    options = await api.options("/v1/scans")
    assert options.status_code == 204 and options.headers["allow"] == "OPTIONS, POST"
    await events_with(isolated, isolated.topic("people"), "province", ["79"])
