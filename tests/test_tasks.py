"""The built-in tasks produce valid, balanced, prefix-determined examples; the registry finds tasks."""

from __future__ import annotations

import re
import sys
import types
from collections import Counter, defaultdict
from functools import cache
from importlib import metadata
from typing import Callable, Sequence, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuitspec.engine.tasks import (
    BUILTIN_TASKS,
    DuplicateTaskError,
    Sampler,
    Task,
    TaskEntryPointError,
    TaskExample,
    UnknownTaskError,
    all_tasks,
    get_task,
    register_task,
    task_names,
)
from circuitspec.engine.tasks import registry

T = TypeVar("T")

BUILTIN_NAMES = [
    "closing_quote",
    "bracket_nesting",
    "bracket_type",
    "var_type",
    "eq_vs_assign",
    "header_colon",
    "for_in",
    "dict_or_set",
    "call_arity",
]


@cache
def samples(name: str, n: int = 400, seed: int = 0) -> tuple[TaskExample, ...]:
    return tuple(get_task(name).sample(n, seed))


def last_line(prefix: str) -> str:
    return prefix.rsplit("\n", 1)[-1]


# Independent rules: the correct answer computed from the prefix alone -----------------------------


def rule_closing_quote(prefix: str) -> str:
    return [c for c in prefix if c in "'\""][-1]


def rule_bracket_nesting(prefix: str) -> str:
    line = last_line(prefix)
    return "]" if line.count("[") > line.count("]") else "\n"


def rule_bracket_type(prefix: str) -> str:
    stack: list[str] = []
    for char in last_line(prefix):
        if char in "([":
            stack.append(char)
        elif char in ")]":
            stack.pop()
    return {"(": ")", "[": "]"}[stack[-1]]


def rule_var_type(prefix: str) -> str:
    bindings = dict(re.findall(r"^(\w+) = (.+)$", prefix, flags=re.M))
    value = bindings[last_line(prefix).strip()]
    return "." if value == "set()" or value.startswith("{") else " "


def rule_eq_vs_assign(prefix: str) -> str:
    return "=" if last_line(prefix).split()[0] in ("if", "elif", "while") else " "


def rule_header_colon(prefix: str) -> str:
    first_word = re.match(r"\s*(\w+)", last_line(prefix)).group(1)
    headers = ("if", "elif", "else", "while", "for", "def", "with", "class", "try")
    return ":" if first_word in headers else "\n"


def rule_for_in(prefix: str) -> str:
    return "i" if re.search(r"\bfor [\w, ]+ $", last_line(prefix)) else "="


def rule_dict_or_set(prefix: str) -> str:
    return ":" if ":" in prefix.rsplit("{", 1)[1] else ","


def rule_call_arity(prefix: str) -> str:
    arity = {name: len(params.split(",")) for name, params in re.findall(r"def (\w+)\((.*?)\):", prefix)}
    name, args = re.search(r"(\w+)\(([^()]*)$", last_line(prefix)).groups()
    return "," if len(args.split(",")) < arity[name] else ")"


RULES: dict[str, Callable[[str], str]] = {
    "closing_quote": rule_closing_quote,
    "bracket_nesting": rule_bracket_nesting,
    "bracket_type": rule_bracket_type,
    "var_type": rule_var_type,
    "eq_vs_assign": rule_eq_vs_assign,
    "header_colon": rule_header_colon,
    "for_in": rule_for_in,
    "dict_or_set": rule_dict_or_set,
    "call_arity": rule_call_arity,
}


# Named positions point at what they claim -------------------------------------------------------


def positions_closing_quote(e: TaskExample) -> bool:
    before = e.prefix[: e.positions["opening_quote"]]
    earlier = max(before.rfind('"'), before.rfind("'"))
    return (e.prefix[e.positions["opening_quote"]] == e.features["opening_quote"]
            and e.features["earlier_quote"] == (before[earlier] if earlier >= 0 else "none"))


def positions_bracket_nesting(e: TaskExample) -> bool:
    at = e.positions["last_open"]
    if e.features["depth"] == 0:
        return at == e.prefix.index("[", e.prefix.rfind("\n") + 1)
    inside = e.prefix[at + 1 :]
    return e.prefix[at] == "[" and inside.count("[") == inside.count("]")


def positions_bracket_type(e: TaskExample) -> bool:
    at = e.positions["innermost_open"]
    inside = e.prefix[at + 1 :]
    return e.prefix[at] == e.features["innermost"] and inside.count("(") == inside.count(")") and inside.count(
        "["
    ) == inside.count("]")


def positions_var_type(e: TaskExample) -> bool:
    name = e.prefix[e.positions["use"] :]
    binding = e.positions["binding"]
    return (binding == 0 or e.prefix[binding - 1] == "\n") and e.prefix.startswith(f"{name} = ", binding)


def starts_statement(prefix: str, at: int) -> bool:
    """Only indentation lies between the previous newline (or the start) and ``at``."""
    before = prefix[:at].rstrip(" ")
    return "\n" not in prefix[at:] and (not before or before.endswith("\n"))


def positions_eq_vs_assign(e: TaskExample) -> bool:
    at = e.positions["keyword"]
    keyword = e.features["keyword"]
    rest = e.prefix[at:]
    return starts_statement(e.prefix, at) and (rest.startswith(f"{keyword} ") if keyword else rest[0].isalpha())


def positions_header_colon(e: TaskExample) -> bool:
    at = e.positions["line_start"]
    keyword = e.features["keyword"]
    rest = e.prefix[at:]
    return starts_statement(e.prefix, at) and (rest.startswith(keyword) if keyword else rest[0].isalpha())


def positions_for_in(e: TaskExample) -> bool:
    at = e.positions["name"]
    follows_for = e.prefix[max(0, at - 4) : at] == "for "
    is_target = re.fullmatch(r"[a-z]\w*(, \w+)? ", e.prefix[at:]) is not None
    return is_target and follows_for == e.features["in_for"] and (follows_for or starts_statement(e.prefix, at))


def positions_dict_or_set(e: TaskExample) -> bool:
    return e.prefix[e.positions["open_brace"]] == "{" and "{" not in e.prefix[e.positions["open_brace"] + 1 :]


def positions_call_arity(e: TaskExample) -> bool:
    def_open, call_open = e.positions["def_open"], e.positions["call_open"]
    defined = re.search(r"(\w+)$", e.prefix[:def_open]).group(1)
    called = re.search(r"(\w+)$", e.prefix[:call_open]).group(1)
    return e.prefix[def_open] == e.prefix[call_open] == "(" and defined == called


POSITION_CHECKS: dict[str, Callable[[TaskExample], bool]] = {
    "closing_quote": positions_closing_quote,
    "bracket_nesting": positions_bracket_nesting,
    "bracket_type": positions_bracket_type,
    "var_type": positions_var_type,
    "eq_vs_assign": positions_eq_vs_assign,
    "header_colon": positions_header_colon,
    "for_in": positions_for_in,
    "dict_or_set": positions_dict_or_set,
    "call_arity": positions_call_arity,
}


def check_example(task: Task, e: TaskExample) -> None:
    """Everything a single example must satisfy, shared by the seeded and Hypothesis tests."""
    assert set(e.features) == set(task.features)
    assert set(e.positions) == set(task.positions)
    assert e.full_text.isascii()
    assert len(e.prefix) <= 72, e.prefix
    assert e.correct == RULES[task.name](e.prefix), e.prefix
    assert POSITION_CHECKS[task.name](e), (e.prefix, dict(e.positions))
    compile(e.full_text, "<t>", "exec")


# Seeded samples ---------------------------------------------------------------------------------


def test_builtin_tasks_are_registered_in_order() -> None:
    assert [task.name for task in BUILTIN_TASKS] == BUILTIN_NAMES
    assert task_names()[: len(BUILTIN_NAMES)] == BUILTIN_NAMES


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_task_documents_itself(name: str) -> None:
    task = get_task(name)
    assert task.description and task.answers
    assert task.features and "answer" in task.positions


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_examples_are_valid(name: str) -> None:
    task = get_task(name)
    examples = task.sample(300, 0)
    assert len(examples) == 300
    for example in examples:
        check_example(task, example)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_sampling_is_deterministic_per_seed(name: str) -> None:
    task = get_task(name)
    assert task.sample(50, 0) == task.sample(50, 0)
    assert task.sample(50, 0) != task.sample(50, 1)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_prefix_determines_the_answer(name: str) -> None:
    answers: defaultdict[str, set[str]] = defaultdict(set)
    for seed in (0, 1):
        for example in samples(name, seed=seed):
            answers[example.prefix].add(example.correct)
    assert all(len(found) == 1 for found in answers.values())


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_classes_and_binary_features_are_balanced(name: str) -> None:
    examples = samples(name)
    columns = {"correct": [e.correct for e in examples]}
    columns.update({feature: [e.features[feature] for e in examples] for feature in get_task(name).features})
    for column, values in columns.items():
        counts = Counter(values)
        binary = column == "correct" or all(isinstance(v, bool) for v in counts) or (
            len(counts) == 2 and all(isinstance(v, str) for v in counts)
        )
        if binary:
            assert len(counts) == 2, (column, counts)
            assert min(counts.values()) >= 0.25 * len(examples), (column, counts)


# Hypothesis drives the same generators ---------------------------------------------------------


class DataSampler:
    """A Sampler backed by Hypothesis draws, so failing examples shrink towards simple snippets."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integer(self, low: int, high: int) -> int:
        return self.data.draw(st.integers(low, high))

    def choice(self, options: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(options))

    def boolean(self) -> bool:
        return self.data.draw(st.booleans())


class SimplestSampler:
    """Always the first option: where Hypothesis shrinks to."""

    def integer(self, low: int, high: int) -> int:
        return low

    def choice(self, options: Sequence[T]) -> T:
        return options[0]

    def boolean(self) -> bool:
        return False


@pytest.mark.parametrize("name", BUILTIN_NAMES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hypothesis_driven_examples_are_valid(name: str, data: st.DataObject) -> None:
    task = get_task(name)
    check_example(task, task.example(DataSampler(data)))


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_simplest_example_is_valid(name: str) -> None:
    task = get_task(name)
    check_example(task, task.example(SimplestSampler()))


# Registry ---------------------------------------------------------------------------------------


def make_task(name: str) -> Task:
    def generate(s: Sampler) -> TaskExample:
        return TaskExample("x =", " ", "=", "1\n", {}, {"answer": 2})

    return Task(name=name, description="A test task.", generate=generate, features={}, positions={"answer": "x"})


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations and entry point loading made by a test do not leak into others."""
    monkeypatch.setattr(registry, "_tasks", dict(registry._tasks))
    monkeypatch.setattr(registry, "_loaded_entry_points", set())
    monkeypatch.setattr(registry, "_entry_points_done", False)


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, entries: dict[str, object]) -> None:
    module = types.ModuleType("circuitspec_fake_plugin")
    for attribute, value in entries.items():
        setattr(module, attribute, value)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    points = [
        metadata.EntryPoint(name=attribute, value=f"{module.__name__}:{attribute}", group=registry.ENTRY_POINT_GROUP)
        for attribute in entries
    ]

    def entry_points(group: str) -> list[metadata.EntryPoint]:
        return points if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry.metadata, "entry_points", entry_points)


def test_unknown_task_suggests_close_names() -> None:
    with pytest.raises(UnknownTaskError) as caught:
        get_task("closing_quotes")
    assert "unknown task 'closing_quotes'; did you mean 'closing_quote'?" in str(caught.value)
    assert caught.value.suggestions == ["closing_quote"]
    assert isinstance(caught.value, ValueError)


def test_unknown_task_without_close_names_lists_known_ones() -> None:
    with pytest.raises(UnknownTaskError) as caught:
        get_task("zzzzzz")
    assert caught.value.suggestions == []
    assert "closing_quote" in str(caught.value)


@pytest.mark.usefixtures("isolated_registry")
def test_duplicate_registration_is_an_error_unless_replaced() -> None:
    with pytest.raises(DuplicateTaskError, match="closing_quote"):
        register_task(make_task("closing_quote"))
    replacement = make_task("closing_quote")
    register_task(replacement, replace=True)
    assert get_task("closing_quote") is replacement
    assert task_names()[0] == "closing_quote"


@pytest.mark.usefixtures("isolated_registry")
def test_custom_task_is_found_after_builtins() -> None:
    task = register_task(make_task("my_task"))
    assert get_task("my_task") is task
    assert [t.name for t in all_tasks()] == [*BUILTIN_NAMES, "my_task"]
    assert get_task("my_task").sample(3, 0)[0].correct == " "


@pytest.mark.usefixtures("isolated_registry")
def test_entry_point_tasks_load_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    single, pair = make_task("plugin_one"), [make_task("plugin_two"), make_task("plugin_three")]
    fake_entry_points(monkeypatch, {"single": single, "pair": pair})
    assert get_task("plugin_two") is pair[0]
    assert task_names()[len(BUILTIN_NAMES) :] == ["plugin_one", "plugin_two", "plugin_three"]


@pytest.mark.usefixtures("isolated_registry")
def test_broken_entry_point_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = metadata.EntryPoint(name="broken", value="no_such_module_xyz:TASK", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [broken])
    with pytest.raises(TaskEntryPointError, match="'broken'.*no_such_module_xyz"):
        get_task("closing_quote")


@pytest.mark.usefixtures("isolated_registry")
def test_entry_point_of_wrong_type_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, {"oops": "not a task"})
    with pytest.raises(TaskEntryPointError, match="'oops'.*must load to a Task"):
        all_tasks()


@pytest.mark.usefixtures("isolated_registry")
def test_entry_point_clashing_with_a_builtin_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, {"clash": make_task("for_in")})
    with pytest.raises(TaskEntryPointError, match="'clash'.*for_in"):
        task_names()
