"""Sanitising what citizens wrote before anyone's browser renders it.

Stored email HTML keeps remote image addresses (`sanitize_html(..., remote_images=True)`, at
intake) so staff may choose to load them; every rendering sanitises again and drops them unless
staff asked (hub.web.staff.mail), so opening a message never calls a tracker.
"""

from __future__ import annotations

from collections.abc import Callable

import nh3

_ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "dd", "div", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s", "small",
    "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
}
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
}
Rewrite = Callable[[str], str | None]


def sanitize_html(html: str | None, *, remote_images: bool = False,
                  image_src: Rewrite | None = None) -> str | None:
    """Keep structure, drop scripts, styles, event handlers and remote-tracking tricks.

    Images may only point at inline parts (cid:), unless `remote_images`; `image_src` may
    rewrite (or drop, with None) each image address that is kept.
    """
    if not html:
        return None

    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        if tag != "img" or attribute != "src":
            return value
        if not value.startswith("cid:") and not (
                remote_images and value.startswith(("http://", "https://"))):
            return None
        return image_src(value) if image_src is not None else value

    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto", "cid", "tel"},
        link_rel="noopener noreferrer nofollow",
        attribute_filter=attribute_filter,
    )
