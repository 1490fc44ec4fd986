"""Label printing: print jobs committed before they are sent, and the printers that print them.

`jobs` keeps each printer's open jobs in the outbox's state (committed with the events that
change them); `worker` is one printer's supervised task (`LabelPrinter`): it turns completed
batches into batch labels, takes pallet labels on request, sends each job and decides
`label.printed` or `label.failed` from the printer's host status; `checks` loads and checks the
configured templates (for `check-config` and `run`).
"""
