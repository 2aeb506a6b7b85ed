"""The repository's routing_rules/ for tests, with City Hall open around the clock.

The shipped calendar closes at lunch, at night, at weekends and on New York's holidays, and its
after-hours rule then adds an automatic reply: a test on the shipped rules would see one more
message depending on when it runs. This copy keeps every rule, form, queue and template and
opens the calendar all day, every day, so the outcome does not depend on the wall clock. The
rule folder's own tests (which check the after-hours reply) are left out of the copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[2] / "routing_rules"
ALWAYS_OPEN = 'timezone = "UTC"\n\n[hours]\n' + "".join(
    f'{day} = ["00:00-00:00"]\n' for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))


def shipped_rules_always_open(into: Path) -> Path:
    rules = into / "routing_rules"
    shutil.copytree(SHIPPED, rules, ignore=shutil.ignore_patterns("tests"))
    (rules / "calendars" / "office_hours.toml").write_text(ALWAYS_OPEN, encoding="utf-8")
    return rules
