"""Crawlers: public posts and reviews about a brand, as :class:`moments.records.Post` records.

Public surface:

* :func:`crawl`: run one spider (imported lazily so importing this package is cheap).
* :class:`crawlers.brands.BrandMatcher`: which configured brands a text is about.
* ``moments crawl`` (:mod:`crawlers.cli`) and ``python -m crawlers.mockserver`` (recorded responses).

The record schema and JSONL I/O live in :mod:`moments.records`; brands.yaml in
:mod:`moments.config`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["crawl"]


def crawl(*args: Any, **kwargs: Any) -> Any:
    """Run one spider; see :func:`crawlers.runner.crawl`."""
    from crawlers.runner import crawl as _crawl

    return _crawl(*args, **kwargs)
