"""Property tests: whatever the lines hold, ingestion never crashes and every line is accounted for
(a row in, a duplicate, or a reject with its line number and a reason)."""
import json

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.social.ingest import ingest

ids = st.one_of(st.text(min_size=0, max_size=6), st.integers(-5, 10**20), st.none(), st.floats(allow_nan=True))
times = st.one_of(st.sampled_from(["2024-05-01T00:00:00Z", "2024-05-01T00:00:00+02:00", "1714521600", "nope", "", "2024-02-30"]),
                  st.integers(-10, 5 * 10**9), st.floats(allow_nan=True, allow_infinity=True), st.none(), st.booleans())
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.floats(allow_nan=True))
junk = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=6)
post = st.fixed_dictionaries({"post_id": ids, "user_id": ids, "created_at": times},
                             optional={"text": st.one_of(st.text(max_size=40), scalars), "parent_id": ids,
                                       "hashtags": junk, "mentions": junk, "label": scalars, "lang": scalars})
line = st.one_of(post.map(json.dumps), junk.map(json.dumps),
                 st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x1c\x1d\x1e\x85\u2028\u2029"), max_size=30))
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _accounting(tmp_path, lines, **kwargs):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    stats = ingest([path], out, **kwargs)
    rejects = pd.read_parquet(out / "rejects.parquet")
    nonblank = [i + 1 for i, s in enumerate(lines) if s.strip()]
    assert stats.lines == len(nonblank)
    assert set(rejects.line) <= set(nonblank) and rejects.reason.str.len().gt(0).all()
    return stats, rejects, nonblank


@SETTINGS
@given(lines=st.lists(line, min_size=1, max_size=25))
def test_generic_lines_all_accounted_for(tmp_path, lines):
    stats, rejects, nonblank = _accounting(tmp_path, lines)
    assert stats.rows["posts"] + stats.duplicates + stats.rejected == len(nonblank)
    posts = pd.read_parquet(tmp_path / "out" / "posts.parquet")
    assert posts.post_id.is_unique and posts.created_at.notna().all()


tweet = st.fixed_dictionaries({"id": ids, "author_id": ids, "created_at": times},
                              optional={"text": scalars, "referenced_tweets": junk, "entities": junk,
                                        "attachments": junk, "author": junk, "conversation_id": ids})
reddit = st.fixed_dictionaries({"id": ids, "author": ids, "created_utc": times},
                               optional={"body": scalars, "parent_id": ids, "title": scalars, "url": scalars,
                                         "selftext": scalars, "subreddit": scalars, "link_id": ids})


@SETTINGS
@given(lines=st.lists(st.one_of(tweet.map(json.dumps), st.builds(lambda d, inc: json.dumps({"data": d, "includes": inc}),
                                                                  st.lists(tweet, max_size=3), junk), junk.map(json.dumps)),
                      min_size=1, max_size=15))
def test_twitter_adapter_never_crashes(tmp_path, lines):
    stats, rejects, nonblank = _accounting(tmp_path, lines, fmt="twitter")
    assert stats.rejected == len(rejects[~rejects.reason.str.startswith("image")])


@SETTINGS
@given(lines=st.lists(st.one_of(reddit.map(json.dumps), junk.map(json.dumps)), min_size=1, max_size=20))
def test_reddit_adapter_lines_all_accounted_for(tmp_path, lines):
    stats, _, nonblank = _accounting(tmp_path, lines, fmt="reddit")
    assert stats.rows["posts"] + stats.duplicates + stats.rejected == len(nonblank)
