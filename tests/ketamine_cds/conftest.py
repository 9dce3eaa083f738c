"""The CDS test app's fixtures, for the tests here that call it beside the other faces."""

from ..cds_hooks.conftest import cds, keys, post, settings  # noqa: F401 - pytest fixtures, used by name
