"""``wan bench``: measured load time, step time and peak memory of each memory strategy.

``runner`` measures (torch, lazily); ``cli`` is the command.
"""
