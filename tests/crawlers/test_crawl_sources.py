"""Each source (1-9) crawled for real, through ``moments crawl``, from recorded responses."""

from __future__ import annotations

from datetime import UTC, datetime

from crawl_helpers import AS_OF, DATA, Crawl

CRAWLED_AT = datetime.fromisoformat(AS_OF.replace("Z", "+00:00"))


def test_mastodon_pages_via_link_header_and_maps_engagement(crawl: Crawl) -> None:
    result = crawl("mastodon", "mastodon", "northwindair")
    assert result.returncode == 0, result.stderr
    posts = result.by_native_id()
    # Two pages followed through the Link header (rel="next"), then an empty page.
    assert set(posts) == {"1100", "1099", "1098", "1090", "1089"}
    assert any("max_id=1098" in r for r in result.requests)
    first = posts["1100"]
    assert first.id == "mastodon:1100"
    assert first.brand == ["northwindair"]
    assert (first.engagement.likes, first.engagement.shares, first.engagement.replies) == (12, 30, 4)
    assert first.engagement.quotes == 2
    assert first.author.followers == 1200 and first.author.handle == "traveller@other.example"
    # HTML stripped, entities unescaped, mentions as a field.
    assert "<" not in first.text and "&amp;" not in first.text and "lost again & nobody" in first.text
    assert "@northwindair" in first.mentions
    assert posts["1099"].urls == ["https://example.com/photo"]
    assert posts["1098"].lang == "de"  # detected: the status had no language
    assert posts["1089"].lang is None  # "ok" is too short to tell
    assert first.created_at == datetime(2026, 11, 20, 11, 50, tzinfo=UTC)
    assert all(p.crawled_at == CRAWLED_AT for p in result.posts)
    assert result.stats["items"] == 5 and result.stats["healthy"] is True


def test_bluesky_search_pages_with_cursor_and_batches_profiles(crawl: Crawl) -> None:
    result = crawl("bluesky", "bluesky", "northwind air")
    assert result.returncode == 0, result.stderr
    posts = {p.native_id.rsplit("/", 1)[-1]: p for p in result.posts}
    assert set(posts) == {"3kabc1", "3kabc2", "3kabc0"}  # second page through the cursor
    one = posts["3kabc1"]
    assert (one.engagement.likes, one.engagement.shares, one.engagement.replies, one.engagement.quotes) == (15, 9, 3, 1)
    assert one.author.followers == 812 and posts["3kabc2"].author.followers == 45
    assert one.url == "https://bsky.app/profile/maria.bsky.social/post/3kabc1"
    assert "https://northwind.example/status" in one.urls
    profile_calls = [r for r in result.requests if "getProfiles" in r]
    assert len(profile_calls) == 1 and "actors=did%3Aplc%3Aaaa111&actors=did%3Aplc%3Abbb222" in profile_calls[0]


def test_reddit_search_pages_with_after(crawl: Crawl) -> None:
    result = crawl("reddit", "reddit", "northwind air")
    assert result.returncode == 0, result.stderr
    posts = result.by_native_id()
    assert set(posts) == {"t3_1abc01", "t3_1abc02", "t3_1abc03"}
    lost = posts["t3_1abc01"]
    assert lost.title == "Northwind Air lost my luggage in Oslo"
    assert (lost.engagement.score, lost.engagement.replies, lost.engagement.upvote_ratio) == (152, 48, 0.95)
    assert lost.url == "https://www.reddit.com/r/travel/comments/1abc01/slug/"
    assert lost.created_at == datetime(2026, 11, 20, 10, 50, tzinfo=UTC)
    link_post = posts["t3_1abc02"]
    assert link_post.urls == ["https://northwind.example/lounge"]
    assert link_post.text == link_post.title == "Northwind Air new lounge at LHR is great"  # a link post: title only


def test_reddit_subreddit_listing(crawl: Crawl) -> None:
    result = crawl("reddit", "reddit", "r/travel")
    assert result.returncode == 0, result.stderr
    assert [p.native_id for p in result.posts] == ["t3_1abc01"]
    assert any(r.startswith("GET /r/travel/new.json") for r in result.requests)


def test_hackernews_stories_and_comments(crawl: Crawl) -> None:
    result = crawl("hackernews", "hackernews", "northwind air")
    assert result.returncode == 0, result.stderr
    posts = result.by_native_id()
    assert set(posts) == {"4200001", "4200000", "4200005"}
    story = posts["4200001"]
    assert (story.engagement.score, story.engagement.replies) == (231, 97)
    assert story.extra["kind"] == "story" and story.urls == ["https://northwind.example/blog/oss"]
    comment = posts["4200005"]
    assert comment.extra["kind"] == "comment" and "painful" in comment.text and "<i>" not in comment.text
    assert posts["4200000"].text.startswith("Has anyone got a refund from Northwind Air & how")


def test_lemmy_posts_and_comments(crawl: Crawl) -> None:
    result = crawl("lemmy", "lemmy", "northwind air")
    assert result.returncode == 0, result.stderr
    posts = result.by_native_id()
    assert set(posts) == {"post/501", "post/500", "comment/9001"}
    post = posts["post/501"]
    assert (post.engagement.score, post.engagement.likes, post.engagement.replies) == (41, 45, 17)
    assert post.extra["upvotes"] == 45 and post.extra["downvotes"] == 4
    # Lemmy timestamps without a zone are UTC.
    assert posts["post/500"].created_at == datetime(2026, 11, 19, 20, 0, tzinfo=UTC)
    assert posts["comment/9001"].engagement.score == 22


def test_appstore_reviews_pages_and_country(crawl: Crawl) -> None:
    result = crawl("appstore", "appstore", "1234567890")
    assert result.returncode == 0, result.stderr
    posts = result.by_native_id()
    assert set(posts) == {"11001", "11000", "10999"}  # page 2 holds one entry (an object, not a list)
    crash = posts["11001"]
    assert crash.rating == 1.0 and crash.title == "App crashes at check-in"
    assert crash.engagement.score == 5
    assert crash.extra["vote_count"] == "6" and crash.extra["app_version"] == "5.2.1"
    assert crash.created_at == datetime(2026, 11, 20, 10, 12, 33, tzinfo=UTC)
    gb = crawl("appstore", "appstore", "1234567890", "--country", "gb")
    assert [p.native_id for p in gb.posts] == ["22001"]


def test_jsonld_reviews_from_sitemap_once_per_page(crawl: Crawl) -> None:
    result = crawl("jsonld", "jsonld", "/sitemap.xml")
    assert result.returncode == 0, result.stderr
    assert len(result.posts) == 3  # the page listed twice in the sitemap yields its reviews once
    assert result.stats["drops"].get("page_seen_twice") == 1
    by_author = {p.author.handle: p for p in result.posts}
    ana = by_author["Ana"]
    assert ana.rating == 1.0 and ana.title == "Legroom is a lie" and "economy & no refund" in ana.text
    assert ana.extra["aggregate_rating"]["ratingValue"] == "3.4"
    assert ana.extra["item_reviewed"] == "Northwind Air Economy Plus"
    assert by_author["Ben"].created_at is None  # no datePublished: null, not a guess
    chris = by_author["Chris"]
    assert chris.created_at == datetime(2026, 11, 19, 17, 30, tzinfo=UTC)
    assert chris.extra["aggregate_rating"]["ratingCount"] == 87
    assert not any(p.extra.get("kind") == "AggregateRating" for p in result.posts)


def test_rss_with_slash_comments(crawl: Crawl) -> None:
    result = crawl("rss", "rss", "/feed.xml")
    assert result.returncode == 0, result.stderr
    posts = result.by_native_id()
    bag = posts["gripes-1001"]
    assert bag.engagement.replies == 14
    assert bag.title == "Northwind Air lost my bag & my patience"
    assert "<b>" not in bag.text and "https://gripes.example/photos" in bag.urls
    assert bag.created_at == datetime(2026, 11, 20, 7, 0, tzinfo=UTC)
    assert posts["https://gripes.example/notes/nw"].created_at is None


def test_atom_feed_follows_next_link(crawl: Crawl) -> None:
    result = crawl("rss", "rss", "/atom.xml")
    assert result.returncode == 0, result.stderr
    assert len(result.posts) == 2
    lisbon = next(p for p in result.posts if p.title == "Northwind Air adds Lisbon route")
    assert lisbon.engagement.replies == 3 and lisbon.author.handle == "Reporter"


def test_import_csv_with_column_mapping(crawl: Crawl) -> None:
    result = crawl(None, "import", str(DATA / "export.csv"), "--config", str(DATA / "import_brands.yaml"))
    assert result.returncode == 0, result.stderr
    posts = result.by_native_id()
    assert set(posts) == {"a-1", "a-2", "a-4"}  # a-3 has no text: dropped, counted
    assert result.stats["drops"]["empty_text"] == 1
    assert posts["a-1"].engagement.likes == 12 and posts["a-1"].engagement.shares == 4
    assert posts["a-1"].author.handle == "kim" and posts["a-1"].brand == ["Northwind Air"]
    assert posts["a-2"].created_at == datetime(2026, 11, 19, 16, 0, tzinfo=UTC)
    assert posts["a-4"].created_at is None  # "not a date": kept, partial, with a reason
    assert result.stats["drops"]["partial_bad_timestamp"] == 1


def test_import_jsonl_skips_bad_lines(crawl: Crawl) -> None:
    result = crawl(None, "import", str(DATA / "export.jsonl"))
    assert result.returncode == 0, result.stderr
    posts = result.by_native_id()
    assert set(posts) == {"x1", "x2"}
    assert posts["x1"].author.handle == "ria" and posts["x1"].author.followers == 210
    assert posts["x2"].created_at == datetime(2026, 11, 20, 1, 20, tzinfo=UTC)
    assert result.stats["drops"] == {"malformed_json": 1, "unexpected_layout": 1}
