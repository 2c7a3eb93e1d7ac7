"""Tools for developing Anju, not installed with it: ``python -m devtools.audit`` audits the dependencies."""
