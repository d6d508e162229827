"""moments.config: the whole brands.yaml as one validated model, errors naming file, line and key."""

from __future__ import annotations

import re
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from models.taxonomy import TOUCHPOINTS, Taxonomy
from moments.config import (
    ConfigError,
    EmailChannel,
    MomentsConfig,
    SlackChannel,
    WebhookChannel,
    check_cron,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
)
from moments.errors import EXIT_USAGE, UsageError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "crawlers" / "brands.example.yaml"
DEMO = ROOT / "flows" / "demo" / "brands.yaml"

# The line an error must name ends with this marker.
MARK = "# <-"

FULL = """\
contact_url: https://example.org/moments-contact
credentials:
  mastodon: {token: "${MOMENTS_TEST_TOKEN}"}
import:
  format: csv
  columns: {native_id: id, text: body}
flag_rules:
  min_velocity: 20
  reopen_margin: 0.25
  p1_score: 7
notifications:
  - {kind: webhook, url: "http://127.0.0.1:8099/hook", secret_env: MOMENTS_WEBHOOK_SECRET, min_priority: P2}
  - {kind: slack, webhook_url_env: MOMENTS_SLACK_WEBHOOK, min_priority: P1, brands: [northwind air], cooldown: 90s}
  - {kind: email, smtp_host: 127.0.0.1, smtp_port: 8025, to: ["care@example.org"], min_priority: P2}
slas:
  P1: {first_response: 15m, resolution: 4h}
  P3: {first_response: 1h, resolution: 7d}
schedules:
  watch: {interval: 90s}
  nightly: {cron: "30 2 * * mon-fri", timezone: Europe/London}
retention:
  posts: 365d
  flags: 4h
brands:
  - name: Northwind Air
    names: ["Northwind Air", Northwind]
    handles: ["@northwindair"]
    keywords: ['"lost bag" AND northwind']
    exclude: ['"northwind traders"']
    taxonomy:
      mode: extend
      touchpoints:
        - {id: loyalty, description: "miles, points, status", examples: ["my miles never posted"]}
        - {id: lounge, label: Lounges, description: "airport lounges and their access"}
    flag_rules: {min_velocity: 10}
    watch_interval: 5m
    sources:
      - {source: mastodon, query: northwindair, base_url: https://mastodon.social}
      - {source: appstore, query: "1234567890", country: gb}
  - name: Contoso Rail
    sources:
      - {source: rss, query: https://example.org/feed.xml}
"""


def write(tmp_path: Path, text: str, name: str = "brands.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def marked_line(path: Path) -> int:
    """The 1-based line of ``path`` that ends with the marker."""
    lines = [i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.endswith(MARK)]
    assert len(lines) == 1, "mark exactly one line"
    return lines[0]


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


# --------------------------------------------------------------------------- a valid config


def test_full_config_parses_with_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOMENTS_TEST_TOKEN", "t0ken")
    config = load_config(write(tmp_path, FULL))

    assert isinstance(config, MomentsConfig)
    assert config.contact_url == "https://example.org/moments-contact"
    assert config.credentials_for("mastodon") == {"token": "t0ken"}
    assert config.import_.format == "csv" and config.import_.columns == {"native_id": "id", "text": "body"}

    # flag rules: given keys set, the rest keep defaults
    assert config.flag_rules.min_velocity == 20 and config.flag_rules.reopen_margin == 0.25
    assert config.flag_rules.p1_score == 7 and config.flag_rules.p2_score == 5.0

    # notifications are typed by kind, defaults filled in
    webhook, slack, email = config.notifications
    assert isinstance(webhook, WebhookChannel) and webhook.url == "http://127.0.0.1:8099/hook"
    assert webhook.secret_env == "MOMENTS_WEBHOOK_SECRET" and webhook.min_priority == "P2"
    assert webhook.timeout == timedelta(seconds=10) and webhook.cooldown is None
    assert isinstance(slack, SlackChannel) and slack.webhook_url_env == "MOMENTS_SLACK_WEBHOOK"
    assert slack.min_priority == "P1" and slack.brands == ["northwind air"] and slack.cooldown == timedelta(seconds=90)
    assert isinstance(email, EmailChannel) and email.to == ["care@example.org"]
    assert email.smtp_host == "127.0.0.1" and email.smtp_port == 8025 and email.sender == "moments@localhost"

    # SLAs: listed priorities as given, unlisted keep the defaults
    assert set(config.slas) == {"P1", "P2", "P3", "P4"}
    assert config.slas["P1"].first_response == timedelta(minutes=15)
    assert config.slas["P1"].resolution == timedelta(hours=4)
    assert config.slas["P3"].first_response == timedelta(hours=1)
    assert config.slas["P3"].resolution == timedelta(days=7)
    assert config.slas["P2"].first_response == timedelta(hours=1)
    assert config.slas["P2"].resolution == timedelta(hours=24)
    assert config.slas["P4"].resolution == timedelta(days=7)

    # schedules: an interval, or a cron line in a time zone
    assert config.schedules.watch.interval == timedelta(seconds=90) and config.schedules.watch.cron is None
    assert config.schedules.nightly.cron == "30 2 * * mon-fri" and config.schedules.nightly.interval is None
    assert config.schedules.nightly.timezone == "Europe/London"

    assert config.retention.posts == timedelta(days=365) and config.retention.flags == timedelta(hours=4)
    assert config.retention.snapshots is None

    northwind, contoso = config.brands
    assert northwind.watch_interval == timedelta(minutes=5) and contoso.watch_interval is None
    assert [s.source for s in northwind.sources] == ["mastodon", "appstore"]
    assert northwind.sources[1].country == "gb" and northwind.sources[1].match_mode == "all"
    assert northwind.sources[0].match_mode == "text" and northwind.sources[0].is_fast
    assert northwind.taxonomy is not None and [tp.id for tp in northwind.taxonomy.touchpoints] == ["loyalty", "lounge"]
    assert contoso.taxonomy is None and contoso.flag_rules is None


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.brands == [] and config.notifications == []
    assert config.schedules.watch.interval == timedelta(minutes=10)
    assert config.schedules.nightly.cron == "0 2 * * *" and config.schedules.nightly.timezone == "UTC"
    assert config.slas["P1"].first_response == timedelta(minutes=15)
    assert config.retention.posts is None
    assert config.rules_for("anything") == config.flag_rules


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("4h", timedelta(hours=4)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        (30, timedelta(seconds=30)),
    ],
)
def test_durations(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("bad", ["10 minutes", "m", "", "-5m", 0, -1, True, "4 h x"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("line", ["0 2 * * *", "*/15 * * * *", "0 9-17 * * mon-fri", "0 0 1,15 jan,jul 0", "5 4 * * 7"])
def test_cron_lines_accepted(line: str) -> None:
    assert check_cron(line) == line


@pytest.mark.parametrize(
    "line",
    ["0 2 * *", "60 * * * *", "0 24 * * *", "* * 0 * *", "a b c d e", "*/0 * * * *", "5-1 * * * *", "0 2 * * fri-mon"],
)
def test_cron_lines_rejected(line: str) -> None:
    with pytest.raises(ValueError, match="cron"):
        check_cron(line)


def test_dumped_config_loads_again(tmp_path: Path) -> None:
    # The crawl runner hands the config to its child process as model_dump(mode="json").
    config = load_config(write(tmp_path, FULL))
    dumped = config.model_dump(mode="json", by_alias=True)
    assert dumped["slas"]["P1"] == {"first_response": "15m", "resolution": "4h"}
    assert dumped["schedules"]["watch"]["interval"] == "90s"
    assert parse_config(dumped) == config


# --------------------------------------------------------------------------- errors: file, line, key

ERRORS = {
    "unknown top-level key": (
        """\
        brands: []
        notifcations: []  # <-
        """,
        "notifcations",
        "unknown key",
    ),
    "unknown key in a brand": (
        """\
        brands:
          - name: Northwind Air
            handles: ["@northwindair"]
            colour: blue  # <-
        """,
        "brands[0].colour",
        "unknown key",
    ),
    "unknown key in a source": (
        """\
        brands:
          - name: Northwind Air
            sources:
              - {source: rss, query: https://example.org/feed.xml}
              - source: mastodon
                query: northwindair
                depth: 3  # <-
        """,
        "brands[0].sources[1].depth",
        "unknown key",
    ),
    "bad source name": (
        """\
        brands:
          - name: A
          - name: B
            sources:
              - {source: rss, query: q}
              - source: twitter  # <-
                query: q
        """,
        "brands[1].sources[1].source",
        "unknown source 'twitter'; expected one of mastodon, ",
    ),
    "missing required key": (
        """\
        brands:
          - name: A
            sources:
              - source: rss  # <-
        """,
        "brands[0].sources[0].query",
        "required key missing",
    ),
    "bad min_priority": (
        """\
        notifications:
          - kind: slack
            webhook_url_env: MOMENTS_SLACK_WEBHOOK
            min_priority: P5  # <-
        """,
        "notifications[0].min_priority",
        "must be 'P1', 'P2', 'P3' or 'P4', got 'P5'",
    ),
    "webhook url not http(s)": (
        """\
        notifications:
          - {kind: slack, webhook_url_env: X}
          - kind: webhook
            url: ftp://example.org/hook  # <-
        """,
        "notifications[1].url",
        r"must be an http\(s\):// URL, got 'ftp://example.org/hook'",
    ),
    "email to not an address": (
        """\
        notifications:
          - kind: email
            smtp_host: 127.0.0.1
            to:
              - care@example.org
              - care-team  # <-
        """,
        "notifications[0].to[1]",
        "not an email address: 'care-team'",
    ),
    "secret_env not a variable name": (
        """\
        notifications:
          - {kind: webhook, url: "http://127.0.0.1/hook", secret_env: "$SECRET"}  # <-
        """,
        "notifications[0].secret_env",
        "must be the name of an environment variable",
    ),
    "unknown channel kind": (
        """\
        notifications:
          - kind: pager  # <-
            url: http://example.org
        """,
        "notifications[0].kind",
        "unknown kind 'pager'; expected one of webhook, slack, email",
    ),
    "channel without kind": (
        """\
        notifications:
          - {kind: slack, webhook_url_env: X}
          - url: http://example.org  # <-
        """,
        "notifications[1].kind",
        r"required key missing \(one of webhook, slack, email\)",
    ),
    "channel naming an unknown brand": (
        """\
        brands:
          - name: Northwind Air
        notifications:
          - kind: slack
            webhook_url_env: X
            brands: [Northwind Air, Contoso]  # <-
        """,
        "notifications[0].brands[1]",
        "unknown brand 'Contoso'; brands: Northwind Air",
    ),
    "SLA for priority P9": (
        """\
        slas:
          P1: {first_response: 15m, resolution: 4h}
          P9: {first_response: 15m, resolution: 4h}  # <-
        """,
        "slas.P9",
        "must be 'P1', 'P2', 'P3' or 'P4', got 'P9'",
    ),
    "SLA resolution before first response": (
        """\
        slas:
          P2:
            first_response: 4h
            resolution: 1h  # <-
        """,
        "slas.P2.resolution",
        r"must not be shorter than first_response \(1h < 4h\)",
    ),
    "schedule with interval and cron": (
        """\
        schedules:
          watch: {interval: 10m}
          nightly:  # <-
            interval: 1d
            cron: "0 2 * * *"
        """,
        "schedules.nightly",
        "give interval or cron, not both",
    ),
    "schedule with neither": (
        """\
        schedules:
          watch: {timezone: UTC}  # <-
        """,
        "schedules.watch",
        "give interval",
    ),
    "cron with 4 fields": (
        """\
        schedules:
          nightly:
            cron: "0 2 * *"  # <-
        """,
        "schedules.nightly.cron",
        r"cron needs 5 fields \(minute hour day month weekday\), got '0 2 \* \*'",
    ),
    "cron out of range": (
        """\
        schedules:
          nightly:
            timezone: Europe/London
            cron: "0 25 * * *"  # <-
        """,
        "schedules.nightly.cron",
        "bad hour field '25'",
    ),
    "unknown time zone": (
        """\
        schedules:
          nightly:
            cron: "0 2 * * *"
            timezone: Europe/Atlantis  # <-
        """,
        "schedules.nightly.timezone",
        "unknown time zone 'Europe/Atlantis'",
    ),
    "duration in words": (
        """\
        retention:
          posts: 365d
          flags: 10 minutes  # <-
        """,
        "retention.flags",
        "expected a duration such as 15m, 4h or 7d, got '10 minutes'",
    ),
    "bad watch_interval": (
        """\
        brands:
          - name: A
            watch_interval: soon  # <-
        """,
        "brands[0].watch_interval",
        "expected a duration",
    ),
    "negative min_velocity": (
        """\
        flag_rules:
          reopen_margin: 0.5
          min_velocity: -5  # <-
        """,
        "flag_rules.min_velocity",
        "must be greater than or equal to 0, got -5",
    ),
    "unordered priority scores": (
        """\
        brands: []
        flag_rules:  # <-
          p1_score: 3
          p2_score: 4
        """,
        "flag_rules",
        r"p1_score >= p2_score >= p3_score",
    ),
    "brand override out of order with the global rules": (
        """\
        flag_rules: {p1_score: 6}
        brands:
          - name: A
            flag_rules:  # <-
              p3_score: 7
        """,
        "brands[0].flag_rules",
        r"p1_score >= p2_score >= p3_score \(with the global flag_rules\)",
    ),
    "duplicate brand names": (
        """\
        brands:
          - name: Northwind Air
          - name: Contoso Rail
          - name: northwind air  # <-
        """,
        "brands[2].name",
        r"brand 'northwind air' repeats brands\[0\]",
    ),
    "duplicate taxonomy ids": (
        """\
        brands:
          - name: A
            taxonomy:
              touchpoints:
                - {id: loyalty, description: miles}
                - {id: lounge, description: lounges}
                - {id: loyalty, description: points}  # <-
        """,
        "brands[0].taxonomy.touchpoints[2].id",
        r"touchpoint id 'loyalty' repeats touchpoints\[0\]",
    ),
    "taxonomy id not a slug": (
        """\
        brands:
          - name: A
            taxonomy:
              touchpoints:
                - id: Loyalty Program  # <-
                  description: miles
        """,
        "brands[0].taxonomy.touchpoints[0].id",
        "must be lowercase letters, digits, _ or -",
    ),
    "key written twice": (
        """\
        brands:
          - name: A
            names: [a]
            names: [b]  # <-
        """,
        "brands[0].names",
        r"duplicate key \(first on line 3\)",
    ),
    "brands not a list": (
        """\
        brands:  # <-
          name: A
        """,
        "brands",
        "must be a valid list",
    ),
}


@pytest.mark.parametrize(("text", "key", "message"), ERRORS.values(), ids=list(ERRORS))
def test_error_names_file_line_and_key(tmp_path: Path, text: str, key: str, message: str) -> None:
    path = write(tmp_path, text)
    error = config_error(path)
    prefix = f"{path}:{marked_line(path)}: {key}: "
    assert error.startswith(prefix), f"{error!r} does not start with {prefix!r}"
    assert re.search(message, error.removeprefix(prefix)), error
    assert "\n" not in error and "pydantic" not in error and "Input should" not in error


def test_one_error_reports_how_many_more(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        flag_rules: {min_velocity: -1}
        retention: {posts: forever}
        """,
    )
    expected = f"{path}:1: flag_rules.min_velocity: must be greater than or equal to 0, got -1 (and 1 more)"
    assert config_error(path) == expected


def test_invalid_yaml_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        brands:
          - name: A
           handles: []  # <-
        """,
    )
    error = config_error(path)
    assert error.startswith(f"{path}:{marked_line(path)}: not valid YAML (")


def test_missing_file(tmp_path: Path) -> None:
    assert config_error(tmp_path / "nope.yaml") == f"config file not found: {tmp_path / 'nope.yaml'}"


def test_top_level_list(tmp_path: Path) -> None:
    path = write(tmp_path, "- name: Northwind Air\n")
    assert config_error(path) == f"{path}:1: the config must be a mapping with a 'brands' list, not a list"


def test_parse_config_without_a_file_names_config() -> None:
    with pytest.raises(ConfigError, match=r"^config: brands\[0\]\.sources\[0\]\.source: unknown source 'myspace'"):
        parse_config({"brands": [{"name": "x", "sources": [{"source": "myspace", "query": "q"}]}]})
    with pytest.raises(ConfigError, match=r"^config: the config must be a mapping"):
        parse_config(["brands"])


def test_config_error_is_a_usage_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"bogus": 1})
    assert isinstance(info.value, UsageError)
    assert info.value.exit_code == EXIT_USAGE == 2


# --------------------------------------------------------------------------- per-brand rules and taxonomy


def test_rules_for_merges_brand_overrides(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    northwind = config.rules_for("NORTHWIND AIR")  # brand names ignore case
    assert northwind.min_velocity == 10  # the brand's override
    assert northwind.p1_score == 7 and northwind.reopen_margin == 0.25  # the global rules
    assert northwind.p2_score == 5.0  # the defaults
    assert config.rules_for("Contoso Rail") == config.flag_rules
    assert config.rules_for("Unknown") == config.flag_rules
    assert config.rules_for(None) == config.flag_rules
    assert config.flag_rules.min_velocity == 20  # the global rules are not changed


def test_taxonomy_for_builds_the_models_taxonomy(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config.taxonomy_for("Contoso Rail") is None and config.taxonomy_for(None) is None
    custom = config.taxonomy_for("northwind air")
    assert custom is not None and custom.mode == "extend"
    taxonomy = Taxonomy.from_config(custom.as_mapping())
    assert taxonomy.ids == (*TOUCHPOINTS, "loyalty", "lounge")
    assert not taxonomy.is_default
    lounge = taxonomy.touchpoints[-1]
    assert lounge.label == "Lounges" and lounge.description == "airport lounges and their access"
    assert taxonomy.touchpoints[-2].examples == ("my miles never posted",)

    replaced = parse_config(
        {"brands": [{"name": "A", "taxonomy": {"mode": "replace", "touchpoints": [{"id": "x", "description": "d"}]}}]}
    )
    mapping = replaced.taxonomy_for("a")
    assert mapping is not None and Taxonomy.from_config(mapping.as_mapping()).ids == ("x",)


# --------------------------------------------------------------------------- environment


def test_credentials_expand_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOMENTS_TEST_ID", "client-1")
    monkeypatch.setenv("MOMENTS_TEST_SECRET", "s3cret")
    monkeypatch.delenv("MOMENTS_TEST_UNSET", raising=False)
    path = write(
        tmp_path,
        """\
        credentials:
          reddit: {client_id: "${MOMENTS_TEST_ID}", client_secret: "pre-${MOMENTS_TEST_SECRET}-post"}
          bluesky: {identifier: "${MOMENTS_TEST_UNSET}"}
        """,
    )
    config = load_config(path)
    assert config.credentials_for("reddit") == {"client_id": "client-1", "client_secret": "pre-s3cret-post"}
    assert config.credentials_for("bluesky") == {}  # unset variables leave nothing behind
    assert config.credentials_for("mastodon") == {}


# --------------------------------------------------------------------------- shipped files


def test_shipped_example_loads() -> None:
    config = load_config(EXAMPLE)
    assert [b.name for b in config.brands] == ["Northwind Air", "Contoso Rail"]
    assert [type(c) for c in config.notifications] == [WebhookChannel, SlackChannel, EmailChannel]
    assert [c.min_priority for c in config.notifications] == ["P2", "P1", "P2"]
    assert config.schedules.nightly.cron and config.schedules.nightly.timezone == "Europe/London"
    assert config.schedules.watch.interval is not None
    assert config.retention.posts is not None
    northwind = config.brands[0]
    assert northwind.watch_interval is not None and northwind.taxonomy is not None
    assert config.rules_for("Northwind Air") != config.rules_for("Contoso Rail")
    taxonomy = Taxonomy.from_config(northwind.taxonomy.as_mapping())
    assert set(taxonomy.ids) > set(TOUCHPOINTS)


def test_demo_config_loads(tmp_path: Path) -> None:
    text = DEMO.read_text(encoding="utf-8").replace("{base_url}", "http://127.0.0.1:1")
    config = load_config(write(tmp_path, text))
    assert [b.name for b in config.brands] == ["Northwind Air"]
    assert {s.base_url for s in config.brands[0].sources} == {"http://127.0.0.1:1"}


def test_touchpoint_criticality_merges_key_by_key_and_is_bounded() -> None:
    config = parse_config(
        {
            "flag_rules": {"touchpoint_criticality": {"fulfilment": 1.5, "purchase_booking": 1.2}},
            "brands": [{"name": "Northwind Air", "flag_rules": {"touchpoint_criticality": {"fulfilment": 2.0}}}],
        }
    )
    rules = config.rules_for("Northwind Air")
    assert rules.touchpoint_criticality == {"fulfilment": 2.0, "purchase_booking": 1.2}
    assert rules.criticality("fulfilment") == 2.0 and rules.criticality("billing") == 1.0
    with pytest.raises(ConfigError, match=r"touchpoint_criticality\.fulfilment: must be between 0 and 3"):
        parse_config({"flag_rules": {"touchpoint_criticality": {"fulfilment": 9}}})
