"""Forms are files: `routing_rules/forms/{form_id}.toml`, loaded with the rule set.

schema.py (the file format), loader.py (reading and checking with `path:line`), uploads.py
(file types by content), validate.py (a citizen's submission -> clean values or errors per
field), submit.py (a clean submission -> a `webform` conversation through the intake).
A form is also an Open311 service (hub.web.open311).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.forms.schema import Form
    from hub.routing.watch import RuleReloader


def live_forms(rules: RuleReloader | None) -> dict[str, Form]:
    """The forms of the live rule set (none while no rule set is live)."""
    current = rules.current if rules is not None else None
    return current.forms if current is not None else {}
