"""Contacts as staff manage them: merging two contacts who are one person.

The rules are hub.service's (who sees what, its errors, audit in the same transaction, events
only after the commit); this module holds the one contact action.
"""

from __future__ import annotations

from sqlalchemy import delete, select, update

from hub import audit
from hub.events import Event
from hub.service import Invalid, NotFound, Publish, sees_all
from hub.storage.db import Database
from hub.storage.tables import Contact, Conversation, Identity, Staff


async def merge_contacts(db: Database, actor: Staff, keep_id: int, other_id: int, *,
                         publish: Publish) -> Contact:
    """Merge contact `other_id` into `keep_id` (supervisors and admins only; others get
    NotFound): its identities and conversations move over, a name or language the kept one
    lacks is taken from it, and it is deleted. One audit row names both."""
    if not sees_all(actor):
        raise NotFound("contact")
    if keep_id == other_id:
        raise Invalid("contact: a contact cannot be merged into itself", "same_contact")
    async with db.transaction() as session:
        keep = await session.get(Contact, keep_id, with_for_update=True)
        other = await session.get(Contact, other_id, with_for_update=True)
        if keep is None or other is None:
            raise NotFound("contact")
        moved = list(await session.execute(select(Conversation.id, Conversation.queue)
                                           .where(Conversation.contact_id == other_id)))
        await session.execute(update(Identity).where(Identity.contact_id == other_id)
                              .values(contact_id=keep_id))
        await session.execute(update(Conversation).where(Conversation.contact_id == other_id)
                              .values(contact_id=keep_id))
        keep.name, keep.language = keep.name or other.name, keep.language or other.language
        await session.execute(delete(Contact).where(Contact.id == other_id))
        audit.record(session, actor.email, "contact.merge", "contact", keep_id,
                     merged=other_id, conversations=[row.id for row in moved])
    for row in moved:
        publish(Event("conversation.updated", row.id, row.queue,
                      {"action": "contact_merge", "actor": actor.email, "contact_id": keep_id}))
    return keep
