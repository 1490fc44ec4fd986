"""What a label says: ZPL for batch labels (the trace code) and pallet labels (an SSCC).

`batch_label(trace_code)` and `sscc_label(sscc)` return the bytes of one ZPL job, from the
built-in template or a `LabelTemplate` with named fields (`check_template` lists a template's
problems for `check-config`). The GS1 rules (FNC1 placement, DataMatrix and GS1-128 data in ZPL's
syntax) live in `agent.labels.gs1` and `agent.labels.code128`. Sending a job is a driver's
(`drivers.printers`); this package knows nothing of printers or of the rest of the agent.
"""

from agent.labels.compose import batch_label, sscc_label
from agent.labels.errors import CodeError, LabelError, TemplateError
from agent.labels.gs1 import Gs1Code
from agent.labels.templates import (
    CONTEXT_FIELDS,
    FIELDS,
    LabelKind,
    LabelTemplate,
    check_template,
    unknown_fields,
)

__all__ = [
    "CONTEXT_FIELDS",
    "FIELDS",
    "CodeError",
    "Gs1Code",
    "LabelError",
    "LabelKind",
    "LabelTemplate",
    "TemplateError",
    "batch_label",
    "check_template",
    "sscc_label",
    "unknown_fields",
]
