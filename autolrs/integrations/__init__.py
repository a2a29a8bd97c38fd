"""One-line AutoLRS for training frameworks that own the training loop.

Each integration lives in its own module and imports its framework only when that module is
imported, so ``import autolrs.integrations`` needs neither:

- :mod:`autolrs.integrations.lightning`: ``AutoLRSCallback`` for ``lightning.pytorch``
  (install with ``pip install 'autolrs[lightning]'``);
- :mod:`autolrs.integrations.transformers`: ``AutoLRSCallback`` and its ``attach`` for the
  Hugging Face ``Trainer`` (``pip install 'autolrs[transformers]'``).

Importing an integration whose framework is missing raises :class:`~autolrs.AutoLRSError`
naming the extra to install. See ``docs/integrations.md`` for how each one gets its losses,
where it keeps its state and how it counts the budget.
"""

from __future__ import annotations

__all__: list[str] = []
