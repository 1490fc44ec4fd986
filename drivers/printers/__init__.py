"""Label printers as drivers: send a job, report the printer's status (ZPL over raw TCP)."""
