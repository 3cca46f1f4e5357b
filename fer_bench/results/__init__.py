"""Stored runs, read without torch: ``runs`` (loading and matching cases), ``records`` and ``tables`` (what the
compare views are built from), ``views`` (the registry of compare views, one module each), ``compare`` (the
`fer-bench compare` command), ``gate`` (the statistical regression gate), ``baseline`` (the native gate's baseline),
``plots`` with ``charts``, ``bars`` and ``lines`` (the charts), and ``report`` with ``report_html`` (the HTML page)."""
