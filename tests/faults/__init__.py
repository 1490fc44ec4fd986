"""The fault-injection suite (issue 8): short scenarios in `make test`, long in `make faults`."""
