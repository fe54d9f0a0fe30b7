"""MkDocs hooks (``hooks:`` in mkdocs.yml): docstrings written for Sphinx, shown cleanly.

Polyn's docstrings use Sphinx's roles (``:class:`~polyn.errors.ActorError```) and ``Example::``
paragraphs. mkdocstrings renders the docstrings as Markdown, which leaves a role's name before
its code span and the double colon. This hook turns ``:role:`~a.b.C``` into ``C`` (and
``:role:`a.b.C``` into ``a.b.C``) as code, and ``Example::`` into ``Example:``. It runs on each
page's HTML, after mkdocstrings.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj|const):<code>(~?)([^<]*)</code>")
_DOUBLE_COLON = re.compile(r"::</p>")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    return _DOUBLE_COLON.sub(":</p>", _ROLE.sub(_role, html))
