"""Reading the car's own CAN bus on its OBD-II port.

The pure core: :mod:`o2x.can.dbc` (the AMI's signals, ``ami.dbc``, and the decoder
compiled from it) and :class:`AmiBus` (frames in, readings out). The python-can
source that feeds it from a real bus is :mod:`o2x.can.source`; ``docs/can.md``
documents every signal and every mapping.
"""

from .bus import AmiBus, AmiBusStats

__all__ = ["AmiBus", "AmiBusStats"]
