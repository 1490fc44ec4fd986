"""Batches: the open batch of each line, its materials, and exactly one trace code per batch.

`line` is a PLC's I/O (its link feeding the tracker); `tracker` is the batch state machine;
`triggers` decides from each poll when the PLC says a batch is complete; `tracecode` composes
and proves the code; `work_orders` says what the line is making; `lines` which line a work
order goes to (the node's lines by id); `shifts` which crew is on.
"""
