"""Task parsing, metrics (against hand-computed values), option placement and the why_stopped classifier.

Pure Python: no Spark. The heavy end-to-end tests are in tests/test_tasks_build.py.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.conftest import FIXTURES
from trialpanorama.tasks import metrics
from trialpanorama.tasks.base import UNPARSEABLE, extract_json, option_order, parse_choice
from trialpanorama.tasks.registry import TASKS, load_task
from trialpanorama.tasks.why_stopped import ReasonClassifier, labelled_accuracy

U = UNPARSEABLE


# ------------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize("text,expected", [
    ('{"step_by_step_thinking": "x", "answer_choice": "B"}', "B"),
    ('Sure.\n```json\n{"step_by_step_thinking": "x", "answer_choice": "C"}\n```\nDone', "C"),
    ('I think {"answer_choice": "d"} fits best', "D"),
    ("After weighing the options, the answer is B.", "B"),
    ("(A)", "A"),
    ('{"answer_choice": "Z"}', U),
    ("I cannot decide between these.", U),
    ("", U),
    (None, U),
])
def test_parse_choice(text, expected):
    assert parse_choice(text, 4) == expected


def test_extract_json_prefers_whole_then_fence_then_prose():
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('x ```json\n{"a": 2}\n``` y {"a": 3}') == {"a": 2}
    assert extract_json('noise {"a": 3} more {"a": 4}') == {"a": 3}
    assert extract_json("{not json}") is None


def test_parse_screening():
    mod = load_task("study_screening")
    text = '```json\n{"results": [{"PMID": "1", "decision": "Include", "confidence": 0.9}, {"PMID": 2, "decision": "excluded"}]}\n```'
    assert mod.parse(text) == {"1": "include", "2": "exclude"}
    assert mod.parse("I would include the first one") == U
    assert mod.parse('{"results": [{"PMID": "1", "decision": "maybe"}]}') == U


def test_parse_sample_size():
    mod = load_task("sample_size_estimation")
    assert mod.parse('{"step_by_step_thinking": "...", "sample_size_needed": 240}') == 240
    assert mod.parse('```json\n{"sample_size_needed": "1,200 participants"}\n```') == 1200
    assert mod.parse("The sample size needed is about 300 patients.") == 300
    assert mod.parse("Roughly 300 patients in 12 weeks") == U
    assert mod.parse('{"sample_size_needed": "unknown"}') == U


def test_parse_completion():
    mod = load_task("trial_completion_assessment")
    p = mod.parse('{"outcome": "terminate", "termination_reason": "enrollment issues", "rationale": "slow accrual"}')
    assert p == {"outcome": "terminate", "reason": "enrollment", "rationale": "slow accrual"}
    p = mod.parse("```json\n{\"outcome\": \"Completed\", \"termination_reason\": null}\n```")
    assert p["outcome"] == "complete" and p["reason"] == U
    p = mod.parse("This trial will likely be terminated because of safety issues.")
    assert p["outcome"] == "terminate" and p["reason"] == "safety"
    assert mod.parse("no idea")["outcome"] == U


def test_parse_search():
    mod = load_task("study_search")
    assert mod.parse('{"query": "asthma[tiab] AND montelukast"}') == "asthma[tiab] AND montelukast"
    assert mod.parse('```\n"asthma"[mh] AND child*\n```') == '"asthma"[mh] AND child*'
    assert mod.parse("Here is what I would search for, roughly, in PubMed") == U
    assert mod.parse('{"query": ""}') == U


# ------------------------------------------------------------------------------------------ metrics
def test_choice_scores_hand_computed():
    m = metrics.choice_scores(["A", "B", U, "A"], ["A", "A", "B", "B"])
    assert m["accuracy"] == pytest.approx(0.25)
    assert m["macro_f1"] == pytest.approx(0.25)  # A: P=R=F1=.5; B: F1=0
    assert m["unparseable"] == 1 and m["n"] == 4


def test_binary_scores_unparseable_is_wrong():
    m = metrics.binary_scores(["include", "exclude", U, "include", U],
                              ["include", "include", "include", "exclude", "exclude"], "include", "exclude")
    # TP=1 FN=2 FP=2 TN=0
    assert m["accuracy"] == pytest.approx(0.2)
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(1 / 3)
    assert m["f1"] == pytest.approx(1 / 3)
    assert m["specificity"] == pytest.approx(0.0)
    assert m["unparseable"] == 2


def test_regression_scores_hand_computed():
    m = metrics.regression_scores([100, 130, U, 50], [100, 100, 200, 100])
    assert m["accuracy_within_20pct"] == pytest.approx(0.25)
    assert m["mae"] == pytest.approx(80 / 3)
    assert m["median_ape"] == pytest.approx(0.3)
    assert m["unparseable"] == 1


def test_ranking_scores_hand_computed():
    m = metrics.ranking_scores(["a", "x", "b", "y", "c"], {"a", "b", "d"}, (2, 5))
    assert m["recall@2"] == pytest.approx(1 / 3) and m["precision@2"] == pytest.approx(0.5)
    assert m["f1@2"] == pytest.approx(0.4)
    assert m["ndcg@2"] == pytest.approx(1 / (1 + 1 / 1.5849625), rel=1e-6)
    assert m["recall@5"] == pytest.approx(2 / 3) and m["precision@5"] == pytest.approx(0.4)
    assert m["f1@5"] == pytest.approx(0.5)
    assert m["ndcg@5"] == pytest.approx(1.5 / (1 + 1 / 1.5849625 + 0.5), rel=1e-6)
    assert m["ap"] == pytest.approx((1 + 2 / 3) / 3)
    assert metrics.mean_dicts([m, m])["map"] == pytest.approx((1 + 2 / 3) / 3)


def test_balanced_accuracy_and_rouge():
    assert metrics.balanced_accuracy(["a", "a", "b", U], ["a", "b", "b", "b"]) == pytest.approx(2 / 3)
    assert metrics.rouge_l(["slow accrual"], ["slow accrual of patients"]) == pytest.approx(2 / 3)
    assert metrics.rouge_l([U], ["slow accrual"]) == 0.0


def test_task_scores_count_unparseable_as_wrong():
    mc = load_task("arm_design")
    refs = [json.dumps({"answer_choice": "A"}), json.dumps({"answer_choice": "B"})]
    assert mc.score([mc.parse('{"answer_choice": "A"}'), mc.parse("garbage")], refs)["accuracy"] == 0.5
    scr = load_task("study_screening")
    ref = [{"decisions": {"1": "include", "2": "exclude"}}]
    m = scr.score([{"1": "include"}], ref)  # PMID 2 missing -> unparseable -> a false positive
    assert m["accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 1.0
    comp = load_task("trial_completion_assessment")
    refs = [{"outcome": "terminate", "reason_class": "safety", "reason_text": "toxicity"},
            {"outcome": "complete", "reason_class": None, "reason_text": None}]
    m = comp.score([comp.parse('{"outcome": "terminate", "termination_reason": "safety", "rationale": "toxicity"}'),
                    comp.parse("garbage")], refs)
    assert m["balanced_accuracy_outcome"] == 0.5 and m["balanced_accuracy_reason"] == 1.0
    assert m["rouge_l_rationale"] == pytest.approx(1.0) and m["unparseable"] == 1


# --------------------------------------------------------------------------------------- structure
def test_registry_lists_eight_modules_with_the_interface():
    assert len(TASKS) == 8
    for name in TASKS:
        mod = load_task(name)
        assert mod.NAME == name and isinstance(mod.VERSION, str)
    with pytest.raises(KeyError):
        load_task("nope")


def test_option_positions_are_deterministic_and_even():
    letters = Counter(option_order(f"trial-{i}", "X", ["a", "b", "c"])[1] for i in range(4000))
    assert set(letters) == set("ABCD")
    assert all(900 < n < 1100 for n in letters.values()), letters
    opts, letter = option_order("k", "X", ["a", "b", "c"])
    assert opts["ABCD".index(letter)] == "X" and option_order("k", "X", ["a", "b", "c"]) == (opts, letter)


# ------------------------------------------------------------------------------------- why_stopped
def test_why_stopped_classifier_on_labelled_set():
    path = FIXTURES / "tasks" / "why_stopped_labelled.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert len(rows) >= 60 and {r["label"] for r in rows} == set(load_task("trial_completion_assessment").REASONS)
    acc = labelled_accuracy(path)
    assert acc["accuracy"] >= 0.9, acc


def test_why_stopped_precedence_and_fallback():
    clf = ReasonClassifier.from_config()
    assert clf.classify("DSMB stopped the study after deaths in the active arm") == "safety"
    assert clf.classify("Futility at interim; enrollment also slow") == "lack_of_efficacy"
    assert clf.classify("The PI retired") == "feasibility"  # investigator rule
    assert clf.classify("   ") is None and clf.classify(None) is None
    assert clf.classify("Zebra") == "feasibility"  # no rule: the configured fallback


# ------------------------------------------------------------------------------------------- split
def test_split_sizes_and_determinism():
    from trialpanorama.tasks import split
    from trialpanorama.tasks.base import Record

    cfg = {"split": {"seed": 1, "test_size": {"study_search": 100, "default": 1000}, "max_test_fraction": 0.2}}
    assert split.n_test(10_000, "arm_design", cfg) == 1000 and split.n_test(10_000, "study_search", cfg) == 100
    assert split.n_test(30, "arm_design", cfg) == 6 and split.n_test(3, "arm_design", cfg) == 1
    assert split.n_test(1, "arm_design", cfg) == 0
    recs = [Record(f"t{i}", [f"t{i}"], [], {}) for i in range(50)]
    a = split.choose_test("arm_design", "trial", recs, cfg)
    assert a == split.choose_test("endpoint_design", "trial", list(reversed(recs)), cfg)  # same trials, any order
    assert len(a) == 10 and a != split.choose_test("arm_design", "trial", recs, {**cfg, "split": {**cfg["split"], "seed": 2}})


def test_split_keeps_reviews_and_their_trials_together():
    """Test reviews pull their trials into the trial tasks' test split; training reviews keep theirs."""
    from trialpanorama.tasks import split
    from trialpanorama.tasks.base import Record

    cfg = {"split": {"seed": 3, "test_size": {"study_search": 2, "default": 6}, "max_test_fraction": 0.5}}
    reviews = [Record(f"r{i}", [f"t{3 * i}", f"t{3 * i + 1}"], [f"p{i}"], {}) for i in range(8)]  # 16 trials cited
    trials = [Record(f"t{i}", [f"t{i}"], [], {}) for i in range(40)]
    keys = split.choose_tests({"study_search": "review", "arm_design": "trial"},
                              {"study_search": reviews, "arm_design": trials}, cfg)
    test_reviews = [r for r in reviews if r.key in keys["study_search"]]
    assert len(test_reviews) == 2 and len(keys["arm_design"]) == 6
    cited_by_test = {u for r in test_reviews for u in r.trial_uids}
    assert cited_by_test <= keys["arm_design"]  # tier 0 first
    cited_by_train = {u for r in reviews if r not in test_reviews for u in r.trial_uids}
    assert not keys["arm_design"] & cited_by_train  # enough uncited trials: no training review is lost
    # the plain hash split of the same trials would have hit training reviews (what the tiers prevent)
    plain = split.choose_test("arm_design", "trial", trials, cfg)
    assert plain != keys["arm_design"]
    assert keys == split.choose_tests({"study_search": "review", "arm_design": "trial"},
                                      {"study_search": list(reversed(reviews)), "arm_design": trials[::-1]}, cfg)
