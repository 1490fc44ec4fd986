"""The printers' label templates: loaded and checked before the agent runs.

A `[[printers]] template` file is one label format with named fields. It is a pallet (SSCC)
label when it names an SSCC field (`sscc`, `sscc_hri`, `sscc_gs1_128`), else a batch label;
the printer's other kind of label is the built-in one. `template_problems` says, one
`printers[i].template: …` line each, why a template cannot be used (unreadable, an unknown
field, a field where its value would be misread); `check-config` and `run` refuse the file then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.labels import FIELDS, LabelKind, LabelTemplate, TemplateError

if TYPE_CHECKING:
    from pathlib import Path

    from agent.config.printers import PrinterConfig
    from agent.config.root import Config

_SSCC_ONLY = FIELDS[LabelKind.SSCC] - FIELDS[LabelKind.BATCH]


@dataclass(frozen=True, slots=True)
class PrinterTemplates:
    """A printer's templates by kind: None is the built-in one."""

    batch: LabelTemplate | None = None
    sscc: LabelTemplate | None = None


def template_kind(text: str) -> LabelKind:
    """Which label a template is: an SSCC label when it names an SSCC field."""
    return LabelKind.SSCC if any("{" + f + "}" in text for f in _SSCC_ONLY) else LabelKind.BATCH


def _load(path: Path) -> LabelTemplate:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise TemplateError(str(path), [f"cannot be read: {exc.strerror or exc}"]) from exc
    return LabelTemplate.load(path, kind=template_kind(text))


def printer_templates(config: PrinterConfig) -> PrinterTemplates:
    """The templates of one printer; raises `TemplateError` when its file is unusable."""
    if config.template is None:
        return PrinterTemplates()
    template = _load(config.template)
    if template.kind is LabelKind.SSCC:
        return PrinterTemplates(sscc=template)
    return PrinterTemplates(batch=template)


def template_problems(config: Config) -> list[str]:
    """Every reason a printer's template cannot be used, one `key: problem` line each."""
    problems = []
    for i, printer in enumerate(config.printers):
        try:
            printer_templates(printer)
        except TemplateError as exc:
            problems += [f"printers[{i}].template: {exc.name} {p}" for p in exc.problems]
    return problems
