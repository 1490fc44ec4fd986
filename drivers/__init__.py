"""Lineside drivers: devices (scanners, PLCs) as async streams of typed readings."""
