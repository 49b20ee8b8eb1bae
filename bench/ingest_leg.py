"""Which of the project's files one check-in scan crosses on its ingest leg (issue 14).

    python -m bench.ingest_leg

One ``POST /v1/scans`` (a person's own token, a self check-in) goes through the ingest app as
served: its middleware, error handlers, the declared route and its handler, the service, the
readers, the domain checks, the event builder and the event log, with the check-in status
read from an in-memory facts store. The event log is ``producers/memory.py``'s (no broker; it
stands where ``producers/kafka.py`` is in service), so only the project's own code runs in the
trace. A first scan warms the caches; the second is traced with
``sys.setprofile``. Printed: the project files entered, in order of first entry, and the
number of times the leg comes back to a file it had left. The third-party libraries
(Starlette, fastavro, PyJWT) are not counted.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from covidtech.processes import ROOT
from covidtech.settings import Settings
from producers.app import create_app
from producers.memory import memory_service, with_service
from producers.status import StatusLookup
from projections.memory import InMemoryStore
from projections.model import ProjectionStore

#: The packages whose files count (the house; tests and benchmarks are not on the leg).
PACKAGES = ("producers", "covidtech", "domain", "schemas", "projections", "streams", "api")


def _project_file(filename: str) -> str | None:
    path = Path(filename)
    try:
        rel = path.relative_to(ROOT)
    except ValueError:
        return None
    return str(rel) if rel.parts and rel.parts[0] in PACKAGES else None


class Trace:
    """The sequence of project files the interpreter is in, one entry per change."""

    def __init__(self) -> None:
        self.files: list[str] = []

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            where = _project_file(frame.f_code.co_filename)
        elif event == "return" and frame.f_back is not None:
            where = _project_file(frame.f_back.f_code.co_filename)
        else:
            return
        if where is not None and (not self.files or self.files[-1] != where):
            self.files.append(where)

    def first_entries(self) -> list[str]:
        return list(dict.fromkeys(self.files))

    def returns(self) -> int:
        """Entries into a file the leg had been in before and left."""
        seen: set[str] = set()
        back = 0
        for f in self.files:
            if f in seen:
                back += 1
            seen.add(f)
        return back


async def main() -> None:
    settings = Settings(secret="bench-ingest-leg-secret-0123456789")
    store = InMemoryStore()

    async def facts() -> ProjectionStore:
        return store

    status = StatusLookup(facts)
    svc = memory_service(settings, lambda: datetime.now(UTC), status=status)
    status.start()
    app = with_service(create_app(settings, producer=svc.log), svc)

    def token(*scopes: str) -> dict[str, str]:
        issued = settings.token_signer().issue("bench", scopes, timedelta(hours=1))
        return {"Authorization": f"Bearer {issued}"}

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ingest"
    ) as http:
        venue = await http.post(
            "/v1/venues",
            json={
                "name": "Chợ Bến Thành",
                "address": "Lê Lợi, Q1",
                "province": "79",
                "district": "760",
                "category": "market",
                "default_dwell_minutes": 45,
            },
            headers=token("venue-admin:79"),
        )
        person = await http.post(
            "/v1/people", json={"province": "79", "district": "760"}, headers=token("app")
        )
        venue_qr, person_qr = venue.json()["venue_qr"], person.json()["person_qr"]
        me = {"Authorization": f"Bearer {person.json()['token']}"}

        def scan() -> Callable[[], Awaitable[httpx.Response]]:
            body = {
                "scan_id": uuid.uuid4().hex,
                "venue_qr": venue_qr,
                "person_qr": person_qr,
                "scanned_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "direction": "IN",
            }
            return lambda: http.post("/v1/scans", json=body, headers=me)

        warm = await scan()()
        assert warm.status_code == 202, warm.text
        traced = scan()
        trace = Trace()
        sys.setprofile(trace)
        try:
            answer = await traced()
        finally:
            sys.setprofile(None)
        assert answer.status_code == 202, answer.text
    await status.stop()
    files = trace.first_entries()
    print(f"one self check-in (POST /v1/scans, answered {answer.status_code}):")
    for i, f in enumerate(files, 1):
        print(f"  {i:2d}. {f}")
    print(f"{len(files)} project files crossed; {trace.returns()} returns to a file already left")


if __name__ == "__main__":
    asyncio.run(main())
