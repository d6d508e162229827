"""Moments' ground floor: the records, the configuration, the settings and the CLI root.

Every stage (``crawlers``, ``models``, ``search``, ``flows``) imports this package,
and it imports none of them.

* :mod:`moments.records`: ``Post``, ``Classification``, ``Flag``, ``FlagEvent`` and
  JSONL reading and writing (a bad line is dropped with its line number and reason).
* :mod:`moments.config`: ``load_config(path) -> MomentsConfig``, the one validated
  model of brands.yaml (brands, sources, taxonomy, flag rules, notifications, SLAs,
  schedules, retention); errors name the file, the line and the key.
* :mod:`moments.settings`: the data directory, the store URL and every environment
  variable, decided in one place.
* :mod:`moments.errors`: the exit-code policy (0 done, 1 failed, 2 bad usage or input).
* :mod:`moments.cli`: the ``moments`` command; stages add subcommands through the
  ``moments.commands`` entry points.
"""
