"""What several test modules share: plain functions and classes, imported by name
(``from tests.support.wait import wait_until``). pyproject.toml puts the checkout on the
pytest path (``pythonpath = ["."]``), so the import works under ``--import-mode=importlib``,
with or without pytest-xdist. Fixtures stay in the conftest files, as thin wrappers over these.
"""
