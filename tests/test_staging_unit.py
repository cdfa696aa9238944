"""Staging settings read from the config: the summary's reason cap (for people and logs, never the counts) and the cache level."""

import pytest
from pyspark import StorageLevel

from trialpanorama.config import load_config
from trialpanorama.sources.staging import OTHER_REASONS, cache_level, summary_max_reasons, top_reasons


def test_reasons_beyond_the_cap_are_summed_under_one_key_and_the_total_is_kept():
    counts = {f"malformed PMID: 'PMID{i}x'": 1 for i in range(120)} | {"missing PMID": 400, "invalid XML": 7}
    capped = top_reasons(counts, 50)
    assert len(capped) == 50
    assert list(capped)[:2] == ["missing PMID", "invalid XML"]  # most frequent first
    assert capped[OTHER_REASONS] == 120 - 47  # 49 kept: the two big ones and 47 singles
    assert sum(capped.values()) == sum(counts.values())


def test_a_short_reason_list_is_kept_whole_and_sorted():
    counts = {"b": 1, "a": 1, "c": 5}
    assert top_reasons(counts, 3) == {"c": 5, "a": 1, "b": 1}
    assert list(top_reasons(counts, 3)) == ["c", "a", "b"]
    assert top_reasons(counts, None) == top_reasons(counts, 3)
    assert top_reasons(counts, 2) == {"c": 5, OTHER_REASONS: 2}


def test_the_cap_comes_from_the_pipeline_config():
    assert summary_max_reasons(load_config()) == 50
    assert summary_max_reasons(load_config(overrides=["sources.summary_max_reasons=3"])) == 3


def test_the_cache_level_is_a_storage_level_named_in_the_config_and_a_wrong_name_is_refused():
    assert cache_level(load_config()) == StorageLevel.DISK_ONLY
    assert cache_level(load_config(overrides=["sources.cache_storage_level=MEMORY_AND_DISK"])) \
        == StorageLevel.MEMORY_AND_DISK
    for bad in ("NOPE", "__class__"):
        with pytest.raises(ValueError, match="not a pyspark StorageLevel"):
            cache_level(load_config(overrides=[f"sources.cache_storage_level={bad}"]))
