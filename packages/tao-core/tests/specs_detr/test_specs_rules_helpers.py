"""The generic helpers of tao_core.specs.rules (also used by the OneFormer rules)."""

from omegaconf import OmegaConf

from tao_core.specs import rules


def test_is_set_and_require():
    assert not rules.is_set(None) and not rules.is_set("") and not rules.is_set([]) and not rules.is_set({})
    assert not rules.is_set(OmegaConf.create([]))
    assert rules.is_set(0) and rules.is_set(False) and rules.is_set("x") and rules.is_set([0])
    (err,) = rules.require(None, "a.b", "a path")
    assert (err.path, err.value, err.expected) == ("a.b", None, "a path")
    assert rules.require("x", "a.b", "a path") == []


def test_check_divisible():
    assert rules.check_divisible(None, 32, "p") == [] and rules.check_divisible(64, 32, "p") == []
    (err,) = rules.check_divisible(20, 32, "p", "why")
    assert err.value == 20 and "multiple of 32 (e.g. 32)" in err.expected and err.expected.endswith("; why")


def test_check_ordered():
    assert rules.check_ordered(1, 1, "lo", "hi") == [] and rules.check_ordered(None, 0, "lo", "hi") == []
    (err,) = rules.check_ordered(5, 2, "lo", "hi")
    assert err.path == "lo" and err.expected == "a value <= hi (2)"


def test_check_one_of_and_length_in():
    assert rules.check_one_of(OmegaConf.create([1, 2]), [[1, 2], [1]], "p") == []
    (err,) = rules.check_one_of([2], [[1, 2], (1,)], "p")
    assert err.value == [2] and "[1]" in err.expected
    assert rules.check_length_in([1, 2, 3], (1, 3), "p") == []
    (err,) = rules.check_length_in([1, 2], (1, 3), "p")
    assert "1 or 3" in err.expected


def test_reconcile_alias():
    section = OmegaConf.create({"a": 1, "b": 1})
    assert rules.reconcile_alias(section, "s", "a", "b", 1) == []
    section.b = 5  # only the alias set: the name follows
    assert rules.reconcile_alias(section, "s", "a", "b", 1) == [] and section.a == 5
    section.a, section.b = 7, 1  # only the name set: the alias follows
    assert rules.reconcile_alias(section, "s", "a", "b", 1) == [] and section.b == 7
    section.b = 9  # both set, differently
    (err,) = rules.reconcile_alias(section, "s", "a", "b", 1)
    assert err.path == "s.b" and err.value == 9


def test_check_gpus_duplicate():
    section = OmegaConf.create({"num_gpus": 2, "gpu_ids": [3, 3]})
    (err,) = rules.check_gpus(section, "evaluate")
    assert err.path == "evaluate.gpu_ids"
