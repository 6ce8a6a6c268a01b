"""Clean synthesized sessions: ``stage`` is ``parrot filter`` (cut a session before its first
degenerate question, drop short and near-duplicate sessions) and reads back what it wrote
(:func:`~parrot.filter.stage.filter_run`)."""
