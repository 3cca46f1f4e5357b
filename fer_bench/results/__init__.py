"""Stored runs, read without torch: ``runs`` (loading and matching cases), ``compare`` (views across machines),
``gate`` (the statistical regression gate), ``baseline`` (the native gate's baseline) and ``plots``."""
