"""Composition root of ketamine-cds: the command line (``cli``), settings (``settings``), the application factory
(``app.create_app``: the CDS Hooks service and the SMART app, with health and metrics) and the demo (``demo``)."""
