"""verl-avconfuse: RL-CoMM (arXiv 2511.10059) as a verl plugin.

Importing this package is cheap and has no side effects on verl; the registrations happen in
:mod:`verl_avconfuse.plugin`, which verl imports through its ``verl.plugins`` entry point.
"""

from pathlib import Path as _Path

from verl_avconfuse.version import __version__

# setup.py ships the top-level ``reward_fns/`` and ``data_preprocess/`` folders as
# ``verl_avconfuse.reward_fns`` and ``verl_avconfuse.data_preprocess``. When this package is
# imported from a source checkout instead (``python -m ...`` run from the repository root puts the
# checkout first on sys.path), the same names resolve to those folders through the package path.
_CHECKOUT = _Path(__file__).resolve().parent.parent
if (
    (_CHECKOUT / "setup.py").is_file()
    and (_CHECKOUT / "reward_fns" / "__init__.py").is_file()
    and not (_Path(__file__).parent / "reward_fns").exists()
):
    __path__.append(str(_CHECKOUT))

__all__ = ["__version__"]
