"""The command-line tools, one module each; installed as ``pcclora-<tool>`` console commands.

``python tools/<tool>.py`` runs the same ``main`` from a source checkout without installing.
"""
