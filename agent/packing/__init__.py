"""Packing stations: pallets (SSCCs) built from scanned children, committed as aggregations.

`sscc` numbers new SSCCs (company prefix, serial reference, check digit: committed, never
reused); `contents` says what an SSCC holds and where a child is packed, from the open pallets
and the history; `station` is a packing scanner's I/O and its state machine (`PACK:NEW`, open,
add, `PACK:REMOVE`, close).
"""
