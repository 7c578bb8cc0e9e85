"""The command-line face: the command table, recipes (``thresher run``) and ``thresher demo``.

Nothing in ``curate`` or ``train`` imports this package; it imports them, lazily, per command.
"""
