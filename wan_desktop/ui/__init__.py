"""The desktop app: a PySide6 window over the engine, on a qasync event loop.

Imports ``engine`` and ``models`` (and starts ``api`` in-process when asked). Widgets stay thin:
engine events become Qt signals in ``bridge``, the app's observable state lives in ``state``,
and each panel of the window is a module of ``panels``.
"""
