"""HTML for the console, escaped by construction.

Every piece of text that goes into a page is a plain ``str`` and is escaped when the page
is built; only what ``tag`` (and ``Markup`` of constants) returns goes in as markup. So a
caller number, a Call-ID, a rule name or a notice reference cannot open a tag or an
attribute, whatever it holds. Pages load only /console/static/* (no inline script or
style: the Content-Security-Policy ``default-src 'self'`` forbids them anyway).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Union

VOID = frozenset(("input", "meta", "link", "br", "hr", "img"))
_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


class Markup(str):
    """Text that is already HTML (built by ``tag``, or a constant written in this package)."""


Child = Union[str, "Markup", None, int, float, Iterable["Child"]]


def escape(text: str) -> str:
    """Text as HTML text or a double-quoted attribute value: & < > " ' escaped."""
    return html.escape(text, quote=True)


def render(child: Child) -> str:
    if child is None:
        return ""
    if isinstance(child, Markup):
        return str(child)
    if isinstance(child, str):
        return escape(child)
    if isinstance(child, bool):
        return escape(str(child).lower())
    if isinstance(child, int | float):
        return escape(str(child))
    return "".join(render(c) for c in child)


def tag(name: str, attrs: Mapping[str, str | int | bool | None] | None = None, *children: Child) -> Markup:
    """``<name attr="value">children</name>``; attributes with value None or False are left
    out, True writes the bare name. Names are ours (constants), checked anyway."""
    assert name and set(name) <= _NAME_OK, name
    parts = [name]
    for key, value in (attrs or {}).items():
        assert key and set(key) <= _NAME_OK, key
        if value is None or value is False:
            continue
        parts.append(key if value is True else f'{key}="{escape(str(value))}"')
    opening = "<" + " ".join(parts) + ">"
    if name in VOID:
        return Markup(opening)
    return Markup(opening + render(list(children)) + f"</{name}>")


def table(columns: list[str], rows: Iterable[Iterable[Child]], cls: str = "data") -> Markup:
    head = tag("thead", None, tag("tr", None, [tag("th", None, c) for c in columns]))
    body = tag("tbody", None, [tag("tr", None, [tag("td", None, cell) for cell in row]) for row in rows])
    return tag("table", {"class": cls}, head, body)


def field(label: str, name: str, value: str = "", placeholder: str = "", kind: str = "text",
          hint: str = "", required: bool = False) -> Markup:
    return tag("label", None, tag("span", None, label),
               tag("input", {"type": kind, "name": name, "value": value or None,
                             "placeholder": placeholder or None, "required": required, "maxlength": "256"}),
               tag("small", None, hint) if hint else None)


NAV = (("now", "Now"), ("upstreams", "Upstreams"), ("find", "Find a call"), ("policy", "Policy"),
       ("notices", "Notices and lists"))


def page(title: str, current: str, body: Child, *, csrf: str = "", who: str = "", script: bool = True,
         logged_in: bool = True) -> bytes:
    """A whole console page: head, navigation, ``body``. ``csrf`` goes in a meta element
    for the scripts (they send it back as X-Sipguard-CSRF)."""
    nav = tag("nav", None,
              tag("span", {"class": "brand"}, "sipguard"),
              [tag("a", {"href": f"/console/{key}", "class": "current" if key == current else None}, label)
               for key, label in NAV] if logged_in else None,
              tag("form", {"method": "post", "action": "/console/logout", "class": "logout"},
                  tag("input", {"type": "hidden", "name": "csrf", "value": csrf}),
                  tag("span", {"class": "who"}, who),
                  tag("button", {"type": "submit"}, "Log out")) if logged_in and who else None)
    doc = tag("html", {"lang": "en"},
              tag("head", None,
                  tag("meta", {"charset": "utf-8"}),
                  tag("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
                  tag("meta", {"name": "sipguard-csrf", "content": csrf}),
                  tag("title", None, f"{title} - sipguard"),
                  tag("link", {"rel": "icon", "href": "/console/static/favicon.svg", "type": "image/svg+xml"}),
                  tag("link", {"rel": "stylesheet", "href": "/console/static/console.css"}),
                  tag("script", {"src": "/console/static/console.js", "defer": True}) if script else None),
              tag("body", {"data-page": current},
                  nav,
                  tag("main", None, tag("h1", None, title), body)))
    return ("<!DOCTYPE html>\n" + doc).encode()


def number(value: float) -> str:
    """A count or rate for a table: whole numbers with thousands separators, others 2 places."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"
