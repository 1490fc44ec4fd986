"""The built-in labels: 4 by 3 inch at 203 dpi (812 by 609 dots), GS1 content only.

The batch label carries the trace code as a GS1 DataMatrix and as GS1-128 under its
human-readable element string, with GTIN, lot, production date and serial as text. A code too
long for one GS1-128 (more than 48 data characters, or wider than the label at 2 dots a module)
is printed as two GS1-128 symbols cut between elements (`BATCH_TWO_SYMBOLS`). The pallet label
carries the SSCC as GS1-128 at 4 dots a module (0.5 mm, GS1's minimum for logistic labels).
Copy one of these to start a template of your own.
"""

from __future__ import annotations

_HEAD = "^XA\n^CI28\n^PW812\n^LL609\n^LH0,0\n"
_BATCH_TOP = (
    "^FO30,30^BXN,6,200,0,0,6,_,1^FH\\^FD{trace_code_datamatrix}^FS\n"
    "^FO260,30^A0N,28,28^FH\\^FDGTIN {gtin}^FS\n"
    "^FO260,70^A0N,28,28^FH\\^FDLOT {lot}^FS\n"
    "^FO260,110^A0N,28,28^FH\\^FDPROD {date}^FS\n"
    "^FO260,150^A0N,28,28^FH\\^FDSERIAL {serial}^FS\n"
)

BATCH_ONE_SYMBOL = (
    _HEAD
    + _BATCH_TOP
    + "^FO20,240^BY2^BCN,120,N,N,N,N^FH\\^FD{trace_code_gs1_128}^FS\n"
    + "^FO30,370^A0N,24,24^FH\\^FD{trace_code_gs1_128_hri}^FS\n"
    + "^XZ\n"
)
"""The batch label when the whole trace code fits one GS1-128."""

BATCH_TWO_SYMBOLS = (
    _HEAD
    + _BATCH_TOP
    + "^FO20,230^BY2^BCN,110,N,N,N,N^FH\\^FD{trace_code_gs1_128_1}^FS\n"
    + "^FO30,345^A0N,24,24^FH\\^FD{trace_code_gs1_128_1_hri}^FS\n"
    + "^FO20,400^BY2^BCN,110,N,N,N,N^FH\\^FD{trace_code_gs1_128_2}^FS\n"
    + "^FO30,515^A0N,24,24^FH\\^FD{trace_code_gs1_128_2_hri}^FS\n"
    + "^XZ\n"
)
"""The batch label when the trace code needs two GS1-128 symbols."""

SSCC = (
    _HEAD
    + "^FO30,30^A0N,36,36^FDSSCC^FS\n"
    + "^FO30,80^A0N,44,44^FH\\^FD{sscc}^FS\n"
    + "^FO40,160^BY4^BCN,260,N,N,N,N^FH\\^FD{sscc_gs1_128}^FS\n"
    + "^FO40,440^A0N,40,40^FH\\^FD{sscc_hri}^FS\n"
    + "^XZ\n"
)
"""The pallet label of one SSCC."""
