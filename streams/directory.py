"""Venues and people as the read side sees them (compacted ``venues`` and ``people`` topics)."""

from __future__ import annotations

from projections.model import Upsert
from streams.context import BatchContext, Message

VENUE_EVENTS = ("covidtech.checkin.VenueRegistered", "covidtech.checkin.VenueUpdated")


class DirectoryHandler:
    """Upserts the latest venue and person records (stateless: the rows are the state)."""

    topics = ("venues", "people")
    tables = ()

    async def handle(self, ctx: BatchContext, msg: Message) -> None:
        assert msg.event is not None
        rec = msg.event.record
        if msg.event.name in VENUE_EVENTS:
            ctx.write(
                [
                    Upsert(
                        "venues",
                        {
                            "venue_id": rec["venue_id"],
                            "name": rec["name"],
                            "address": rec["address"],
                            "province": rec["province"],
                            "district": rec["district"],
                            "category": rec["category"],
                            "default_dwell_minutes": rec["default_dwell_minutes"],
                            "updated_at": rec["occurred_at"],
                        },
                    )
                ]
            )
        elif msg.event.name == "covidtech.people.PersonRegistered":
            ctx.write(
                [
                    Upsert(
                        "people",
                        {
                            "person_id": rec["person_id"],
                            "province": rec["province"],
                            "district": rec["district"],
                            "birth_year": rec["birth_year"],
                            "registered_at": rec["occurred_at"],
                        },
                    )
                ]
            )
        else:
            ctx.dead_letter(msg, f"unexpected event {msg.event.name} on {msg.topic}")
