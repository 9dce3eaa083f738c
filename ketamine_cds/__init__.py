"""Composition root of ketamine-cds: the command line, settings and (later) the application factory."""
