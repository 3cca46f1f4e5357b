"""This machine: its fingerprint (``fingerprint``, composed of ``host``, ``software``, ``gpus`` and ``telemetry``
over one NVML session, ``nvml``), the text and MLPerf reports of it (``report``) and the malloc a run uses
(``allocator``)."""
