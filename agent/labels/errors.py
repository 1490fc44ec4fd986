r"""The errors of label composition.

Errors::

    LabelError              a label cannot be made
     ├── TemplateError      a template is unusable: unknown fields, a field outside `^FH\` field
     │                      data, a barcode command set up so that our data would be misread
     └── CodeError          the code cannot go on a label: not a valid GS1 element string or
                            SSCC, a character outside GS1's set, too long for its symbol
"""

from __future__ import annotations


class LabelError(Exception):
    """A label cannot be made."""


class TemplateError(LabelError):
    """A label template is unusable; `problems` lists every reason, one sentence each."""

    def __init__(self, name: str, problems: list[str]) -> None:
        super().__init__(f"label template {name}: " + "; ".join(problems))
        self.name = name
        self.problems = problems


class CodeError(LabelError):
    """A code cannot be put on a label as it is."""
