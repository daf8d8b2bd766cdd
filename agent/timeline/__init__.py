"""The timeline report: why a command was or was not accepted, on one time axis.

:class:`~agent.timeline.trace.Timeline` records (bounded) what the pipeline saw, heard and
decided; :func:`~agent.timeline.page.write_report` turns a snapshot of it into one
self-contained HTML page (needs the ``report`` extra: plotly).
"""
