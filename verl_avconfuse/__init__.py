"""verl-avconfuse: RL-CoMM (arXiv 2511.10059) as a verl plugin.

Importing this package is cheap and has no side effects on verl; the registrations happen in
:mod:`verl_avconfuse.plugin`, which verl imports through its ``verl.plugins`` entry point.
"""

from verl_avconfuse.version import __version__

__all__ = ["__version__"]
