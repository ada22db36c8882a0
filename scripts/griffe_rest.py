"""A griffe extension for the API reference (mkdocs.yml loads it): the docstrings are
written for ``help()`` and doctest, in reST's plain forms, and this shows those forms in
Markdown as they are meant.

- A doctest block (from a ``>>>`` line to the next blank line) becomes a ``pycon`` code
  block; Markdown would read its ``>`` as nested quotes.
- A literal block (a paragraph ending in ``::``, then an indented block) becomes a code
  block, the paragraph ending in ``:``.

Everything else is left as written: ``code`` and `name` are code spans in Markdown too.
"""

from __future__ import annotations

from typing import Any

import griffe


def rest_to_markdown(text: str) -> str:
    """Return the docstring ``text`` with its doctest and literal blocks fenced as code."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].strip())
                i += 1
            out += [f"{indent}```pycon", *(f"{indent}{b}" for b in block), f"{indent}```"]
            continue
        if line.rstrip().endswith("::") and i + 1 < len(lines) and not lines[i + 1].strip():
            head = line.rstrip()[:-2].rstrip()
            out.append(head + ":" if head else "")
            base = len(line) - len(stripped)
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            block = []
            while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > base):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            if block:
                cut = min(len(b) - len(b.lstrip()) for b in block if b.strip())
                pad = " " * base
                out += ["", f"{pad}```", *(f"{pad}{b[cut:]}" if b.strip() else "" for b in block), f"{pad}```", ""]
                i = j
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


class RestDocstrings(griffe.Extension):
    """Fence the doctest and literal blocks of every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = rest_to_markdown(obj.docstring.value)
