"""This machine: its fingerprint (``fingerprint``), the text and MLPerf reports of it (``report``) and the malloc
a run uses (``allocator``)."""
