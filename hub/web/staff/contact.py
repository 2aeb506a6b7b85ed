"""The contact panel of a conversation: the contact's name, every identity with its channel and
opt-out state, and the contact's other conversations the staff member may see (hub.service
decides which); and the merge of another contact into this one, for supervisors and admins
(hub.contacts.merge_contacts: audited, others get 404; the form's action is in
hub.web.staff.actions).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from hub import service
from hub.storage.tables import Conversation, Staff
from hub.web.staff.queries import IdentityRow


@dataclass(frozen=True, slots=True)
class ContactPanel:
    id: int
    name: str | None
    identities: list[IdentityRow]
    others: list[Conversation]  # the contact's other conversations the viewer may see
    may_merge: bool


async def contact_panel(session: AsyncSession, staff: Staff, contact_id: int,
                        conversation_id: int, identities: list[IdentityRow]) -> ContactPanel:
    """The panel beside conversation `conversation_id`; `identities` are the contact's."""
    contact, conversations = await service.contact_for(session, staff, contact_id)
    return ContactPanel(
        id=contact.id, name=contact.name, identities=identities,
        others=[c for c in conversations if c.id != conversation_id],
        may_merge=service.sees_all(staff))
