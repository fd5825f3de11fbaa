"""Campaigns as data: ``bench sweep FILE`` runs a sweep file's runs (a grid and/or a list of ``bench run``
invocations, with dependencies between them) on local worker processes or through ``submitit``.

- ``bench.sweep.spec``: the file format, its checks, the expansion into runs (no torch).
- ``bench.sweep.plan``: each run as a ``RunConfig`` planned with ``bench.runner.plan_run``; estimates.
- ``bench.sweep.launch``: the controller and the ``local`` and ``submitit`` launchers.
- ``bench.sweep.report``: progress lines, the summary, the failures.
"""
