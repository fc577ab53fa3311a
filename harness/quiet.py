"""Keep third-party deprecation chatter off the terminal, which is for progress, results and problems.

torch warns ``TypedStorage is deprecated`` once per process, and every cell runs in its own
process, so one run printed dozens of them. The filters go into the CLI process and into each cell
process; ``--debug`` sets ``HARNESS_SHOW_WARNINGS`` so that every process shows them again.
"""

from __future__ import annotations

import os
import warnings

SHOW_VARIABLE = "HARNESS_SHOW_WARNINGS"
NOISY_MESSAGES = (r"TypedStorage is deprecated",)  # torch's, as a UserWarning
NOISY_CATEGORIES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def quiet_third_party_warnings(show: bool = False) -> None:
    """Ignore deprecation warnings in this process (and, through the environment, in its children)
    unless ``show`` is set, here or by a parent process."""
    if show:
        os.environ[SHOW_VARIABLE] = "1"
    if os.environ.get(SHOW_VARIABLE):
        return
    for message in NOISY_MESSAGES:
        warnings.filterwarnings("ignore", message=message, category=UserWarning)
    for category in NOISY_CATEGORIES:
        warnings.filterwarnings("ignore", category=category)
