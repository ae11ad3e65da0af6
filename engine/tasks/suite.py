"""The built-in tasks: binary next-character problems on short, natural Python snippets.

Each generator builds ``prefix`` so that the correct answer follows from it alone (a small model
can learn the rule), and a ``suffix`` that makes ``full_text`` valid Python for the training mix.
"""

from __future__ import annotations

from itertools import permutations
from typing import Callable

from .base import FeatureValue, Sampler, Task, TaskExample
from .domain import LOWERCASE, STRING_BODY_CHARS, Chars, Domain
from .snippets import (
    BASE_CLASSES,
    DEF_NAMES,
    INDENT,
    KEY_WORDS,
    PARAMS,
    QUOTES,
    atom,
    attribute,
    block_context,
    call,
    class_name,
    comparison,
    def_name,
    digit,
    distinct,
    distinct_identifiers,
    exception_name,
    expression,
    function_name,
    identifier,
    key_literals,
    module_name,
    parameters,
    quote,
    short_identifier,
    short_statement,
    short_string,
    small_int,
    string_body,
    string_literal,
    subscript,
)

CLOSERS = {"(": ")", "[": "]"}


def _example(
    prefix: str, correct: str, wrong: str, suffix: str, features: dict[str, FeatureValue], **positions: int
) -> TaskExample:
    return TaskExample(prefix, correct, wrong, suffix, features, {**positions, "answer": len(prefix) - 1})


def _other_quote(q: str) -> str:
    return "'" if q == '"' else '"'


# closing_quote ------------------------------------------------------------------------------------


def _quote_context(s: Sampler) -> tuple[str, str]:
    """Text before a string literal on its line, and the text after its closing quote."""
    kind = s.integer(0, 5)
    if kind == 0:
        return f"{identifier(s)} = ", "\n"
    if kind == 1:
        return "print(", ")\n"
    if kind == 2:
        first = s.choice((atom, string_literal))(s)
        return f"{function_name(s)}({first}, ", ")\n"
    if kind == 3:
        return f"{identifier(s)}[", f"] = {atom(s)}\n"
    if kind == 4:
        return f"if {identifier(s)} == ", f":\n{INDENT}pass\n"
    return f"def {def_name(s)}({parameters(s, 1)}):\n{INDENT}return ", "\n"


def _closing_quote_domains() -> tuple[Domain, ...]:
    """Finite slices of the task for proofs: a string opened right after a one-letter assignment or
    ``print(``, holding 1-3 characters of any printable body (the generator writes words there; any
    printable character but a quote or backslash is wider), with no earlier string literal."""
    body = Chars(STRING_BODY_CHARS, 1, 3, "[^\"'\\\\]")
    leads = {"assign": ("assigned to a one-letter name", (Chars(LOWERCASE, 1, 1, "[a-z]"), " = ")),
             "print": ("printed", ("print(",))}
    return tuple(
        Domain(f"{lead}_{quote_name}",
               f"{what}: a string opened with a {quote_name} quote and 1-3 printable body characters (no quote "
               "or backslash); no earlier string literal",
               (*parts, q, body), {"opening_quote": q, "earlier_quote": "none"})
        for quote_name, q in (("double", '"'), ("single", "'"))
        for lead, (what, parts) in leads.items())


def gen_closing_quote(s: Sampler) -> TaskExample:
    return _closing_quote(s, _quote_context)


def gen_closing_quote_in(s: Sampler, lead: str, after: str) -> TaskExample:
    """The open literal sits in the caller's context; the preceding distractor line is still drawn."""
    return _closing_quote(s, lambda s: (lead, after))


def _closing_quote(s: Sampler, context: Callable[[Sampler], tuple[str, str]]) -> TaskExample:
    q = quote(s)
    body = string_body(s)
    before = f"{identifier(s)} = {string_literal(s)}\n" if s.integer(0, 2) == 2 else ""
    lead, after = context(s)
    prefix = f"{before}{lead}{q}{body}"
    earlier = [c for c in before + lead if c in QUOTES]  # bodies hold no quotes: the last is a literal's
    features: dict[str, FeatureValue] = {"opening_quote": q, "body_length": len(body),
                                         "earlier_quote": earlier[-1] if earlier else "none"}
    return _example(prefix, q, _other_quote(q), after, features, opening_quote=len(before + lead))


# bracket_nesting ----------------------------------------------------------------------------------


def _list_literal(s: Sampler, depth: int, width: int = 3) -> str:
    """A complete, regular list literal nested exactly ``depth`` levels deep, ``width`` atoms wide at most."""
    if depth == 1:
        items = [s.choice((digit, short_identifier))(s) for _ in range(s.integer(1, width))]
    else:
        items = [_list_literal(s, depth - 1, width) for _ in range(s.integer(1, 2))]
    return "[" + ", ".join(items) + "]"


def _open_list(s: Sampler, depth: int, max_depth: int) -> str:
    """``depth`` unclosed ``[`` levels whose text ends with a complete inner list.

    Deeper literals get narrower innermost lists so the prefix stays short.
    """
    text = ""
    width = 4 - max_depth
    for level in range(1, depth + 1):
        inner = max_depth - level
        siblings = [_list_literal(s, inner, width) for _ in range(s.integer(0, 1))]
        if level == depth:
            siblings.append(_list_literal(s, inner, width))
            text += "[" + ", ".join(siblings)
        else:
            text += "[" + "".join(f"{sibling}, " for sibling in siblings)
    return text


def _bracket_stack(text: str) -> list[int]:
    stack: list[int] = []
    for index, char in enumerate(text):
        if char == "[":
            stack.append(index)
        elif char == "]":
            stack.pop()
    return stack


def gen_bracket_nesting(s: Sampler) -> TaskExample:
    closed = s.boolean()
    max_depth = s.integer(1, 3) if closed else s.integer(2, 3)
    depth = 0 if closed else s.integer(1, max_depth - 1)
    context, indent = block_context(s) if max_depth < 3 else ("", "")
    lead = f"{context}{indent}{identifier(s)} = "
    literal = _list_literal(s, max_depth, 4 - max_depth) if closed else _open_list(s, depth, max_depth)
    stack = _bracket_stack(literal)
    last_open = len(lead) + (stack[-1] if stack else 0)
    features: dict[str, FeatureValue] = {"depth": depth, "max_depth": max_depth}
    if closed:
        return _example(lead + literal, "\n", "]", "", features, last_open=last_open)
    suffix = "]" * (depth - 1) + "\n"
    return _example(lead + literal, "]", "\n", suffix, features, last_open=last_open)


# bracket_type -------------------------------------------------------------------------------------


def _opener(s: Sampler, kind: str, literal_ok: bool) -> str:
    """A call ``f(``, a subscript ``items[`` or (where natural) a list display ``[``."""
    if kind == "(":
        return f"{function_name(s)}("
    if literal_ok and s.boolean():
        return "["
    return f"{identifier(s)}["


def _open_brackets(text: str) -> int:
    """How many '(' and '[' of ``text`` stay open, skipping one-line string literals: a caller's
    context (``f(a, ``) adds to the depth of the nest it holds."""
    depth, in_string = 0, ""
    for char in text:
        if in_string:
            in_string = "" if char == in_string else in_string
        elif char in "'\"":
            in_string = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
    return depth


def gen_bracket_type(s: Sampler) -> TaskExample:
    return _bracket_type(s, None)


def gen_bracket_type_in(s: Sampler, head: str, tail: str) -> TaskExample:
    """The nest sits in the caller's context, which ends where an expression (a list display too) may start."""
    return _bracket_type(s, (head, tail))


def _bracket_type(s: Sampler, context: tuple[str, str] | None) -> TaskExample:
    depth = s.integer(1, 3)
    innermost = s.choice(("(", "["))
    kinds = [s.choice(("(", "[")) for _ in range(depth - 1)] + [innermost]
    if context is None:
        head_kind = s.integer(0, 2)
        head, tail = [("", "\n"), (f"{identifier(s)} = ", "\n"), ("if ", f":\n{INDENT}pass\n")][head_kind]
        literal_ok = head_kind == 1
    else:
        (head, tail), literal_ok = context, True
    text = head
    opens: list[int] = []
    for kind in kinds:
        opener = _opener(s, kind, literal_ok)
        text += opener
        opens.append(len(text) - 1)
        if opener.endswith("(") or opener == "[":
            text += "".join(f"{s.choice((atom, call, subscript))(s)}, " for _ in range(s.integer(0, 1)))
        literal_ok = kind == "("
    text += atom(s)
    suffix = "".join(CLOSERS[k] for k in reversed(kinds[:-1])) + tail
    correct = CLOSERS[innermost]
    wrong = ")" if correct == "]" else "]"
    features: dict[str, FeatureValue] = {"innermost": innermost, "depth": depth + _open_brackets(head)}
    return _example(text, correct, wrong, suffix, features, innermost_open=opens[-1])


# var_type -----------------------------------------------------------------------------------------


def _set_value(s: Sampler) -> str:
    if not s.boolean():
        return "set()"
    return "{" + ", ".join(distinct(s, [str(k) for k in range(10)], s.integer(1, 2))) + "}"


def _str_value(s: Sampler) -> str:
    if not s.boolean():
        q = quote(s)
        return q + q
    return short_string(s)


def _other_value(s: Sampler) -> str:
    return s.choice(("0", "None", "1", "True", "[]"))


def _use_header(s: Sampler, loop_var: str, source: str) -> tuple[str, str]:
    """A block header, and the value its body adds to the used variable."""
    kind = s.integer(0, 2)
    if kind == 0:
        return f"for {loop_var} in {source}:\n", loop_var
    if kind == 1:
        return f"while {source}:\n", f"{source}.pop()"
    return f"if {source}:\n", source


def gen_var_type(s: Sampler) -> TaskExample:
    n_vars = 3 if s.integer(0, 2) == 2 else 2
    names = distinct_identifiers(s, n_vars + 2, short=True)
    loop_var, source = names[n_vars], names[n_vars + 1]
    values = [_set_value(s), _str_value(s), _other_value(s)][:n_vars]
    used = s.choice((0, 1))
    order = s.choice(list(permutations(range(n_vars))))
    text = ""
    binding = 0
    for k in order:
        if k == used:
            binding = len(text)
        text += f"{names[k]} = {values[k]}\n"
    header, item = _use_header(s, loop_var, source)
    text += header + INDENT
    use = len(text)
    prefix = text + names[used]
    features: dict[str, FeatureValue] = {"var_type": ("set", "str")[used], "n_vars": n_vars}
    if used == 0:
        return _example(prefix, ".", " ", f"add({item})\n", features, binding=binding, use=use)
    return _example(prefix, " ", ".", f"+= {item}\n", features, binding=binding, use=use)


# eq_vs_assign -------------------------------------------------------------------------------------


def _target(s: Sampler) -> str:
    """What gets assigned or compared: mostly a name, sometimes an attribute or subscript."""
    return s.choice((identifier, identifier, attribute, subscript))(s)


def _if_block(s: Sampler, indent: str) -> str:
    """An ``if`` block that an ``elif``/``else`` at the same indentation can follow."""
    return f"{indent}if {comparison(s)}:\n{indent}{INDENT}{short_statement(s)}\n"


def gen_eq_vs_assign(s: Sampler) -> TaskExample:
    in_condition = s.boolean()
    context, indent = block_context(s)
    target = _target(s)
    if not in_condition:
        lead = context + indent
        features: dict[str, FeatureValue] = {"in_condition": False, "keyword": ""}
        return _example(f"{lead}{target} =", " ", "=", f"{expression(s)}\n", features, keyword=len(lead))
    keyword = s.choice(("if", "elif", "while"))
    if keyword == "elif":
        context, indent = "", ""
    lead = context + (_if_block(s, indent) if keyword == "elif" else "") + indent
    value = s.choice((atom, short_string, lambda _: "None"))(s)
    suffix = f" {value}:\n{indent}{INDENT}{short_statement(s)}\n"
    features = {"in_condition": True, "keyword": keyword}
    return _example(f"{lead}{keyword} {target} =", "=", " ", suffix, features, keyword=len(lead))


# header_colon -------------------------------------------------------------------------------------


def _for_clause(s: Sampler) -> str:
    kind = s.integer(0, 3)
    if kind == 0:
        loop_var, iterable = distinct_identifiers(s, 2)
        return f"{loop_var} in {iterable}"
    if kind == 1:
        return f"{identifier(s)} in range({small_int(s)})"
    if kind == 2:
        key, value, mapping = distinct_identifiers(s, 3)
        return f"{key}, {value} in {mapping}.items()"
    index, item, iterable = distinct_identifiers(s, 3)
    return f"{index}, {item} in enumerate({iterable})"


def _header(s: Sampler, keyword: str) -> str:
    """The content of a compound statement's header line, without its colon."""
    if keyword in ("if", "elif", "while"):
        return f"{keyword} {comparison(s)}"
    if keyword == "for":
        return f"for {_for_clause(s)}"
    if keyword == "def":
        return f"def {def_name(s)}({parameters(s, s.integer(0, 3))})"
    if keyword == "with":
        source = s.choice((identifier, string_literal))(s)
        return f"with open({source}) as {identifier(s)}"
    if keyword == "class":
        bases = s.choice(("", f"({s.choice(BASE_CLASSES)})"))
        return f"class {class_name(s)}{bases}"
    return keyword


def _plain(s: Sampler) -> str:
    """A simple statement line that is easy to mistake for a header (``x = y > 0``, ``f(a, b)``)."""
    kind = s.integer(0, 5)
    if kind == 0:
        return f"{identifier(s)} = {comparison(s)}"
    if kind == 1:
        return f"{function_name(s)}({', '.join(atom(s) for _ in range(s.integer(0, 2)))})"
    if kind == 2:
        return f"{identifier(s)} += {small_int(s)}"
    if kind == 3:
        return f"print({expression(s)})"
    if kind == 4:
        return f"assert {comparison(s)}"
    return f"import {module_name(s)}"


HEADER_KEYWORDS = ("if", "for", "while", "def", "with", "else", "elif", "class", "try")


def gen_header_colon(s: Sampler) -> TaskExample:
    if not s.boolean():
        if s.integer(0, 3) == 3:
            context, indent = f"def {def_name(s)}({parameters(s, s.integer(1, 2))}):\n", INDENT
            content = f"return {expression(s)}"
        else:
            context, indent = block_context(s)
            content = _plain(s)
        lead = context + indent
        features: dict[str, FeatureValue] = {"is_header": False, "keyword": ""}
        return _example(lead + content, "\n", ":", "", features, line_start=len(lead))
    keyword = s.choice(HEADER_KEYWORDS)
    context, indent = block_context(s) if keyword not in ("else", "elif") else ("", "")
    lead = context + (_if_block(s, indent) if keyword in ("else", "elif") else "") + indent
    suffix = f"\n{indent}{INDENT}pass\n"
    if keyword == "try":
        suffix += f"{indent}except {exception_name(s)}:\n{indent}{INDENT}pass\n"
    features = {"is_header": True, "keyword": keyword}
    return _example(lead + _header(s, keyword), ":", "\n", suffix, features, line_start=len(lead))


# for_in -------------------------------------------------------------------------------------------


def _loop_target(s: Sampler) -> str:
    return ", ".join(distinct_identifiers(s, 2)) if s.integer(0, 3) == 3 else identifier(s)


def gen_for_in(s: Sampler) -> TaskExample:
    in_for = s.boolean()
    context, indent = block_context(s)
    target = _loop_target(s)
    iterable = s.choice((identifier, call, attribute))(s)
    if not in_for:
        lead = context + indent
        features: dict[str, FeatureValue] = {"in_for": False}
        return _example(f"{lead}{target} ", "=", "i", f" {expression(s)}\n", features, name=len(lead))
    if s.integer(0, 2) == 2:
        lead = f"{context}{indent}{identifier(s)} = [{expression(s)} for "
        suffix = f"n {iterable}]\n"
    else:
        lead = f"{context}{indent}for "
        suffix = f"n {iterable}:\n{indent}{INDENT}{short_statement(s)}\n"
    return _example(f"{lead}{target} ", "i", "=", suffix, {"in_for": True}, name=len(lead))


# dict_or_set --------------------------------------------------------------------------------------


def _dict_value(s: Sampler) -> str:
    if not s.boolean():
        return s.choice((digit, short_identifier))(s)
    q = quote(s)
    return f"{q}{s.choice(KEY_WORDS)}{q}"


def gen_dict_or_set(s: Sampler) -> TaskExample:
    return _dict_or_set(s, None)


def gen_dict_or_set_in(s: Sampler, lead: str, after: str) -> TaskExample:
    """The literal sits in the caller's context instead of a drawn line and head."""
    return _dict_or_set(s, (lead, after))


def _dict_or_set(s: Sampler, context: tuple[str, str] | None) -> TaskExample:
    is_dict = s.choice((True, False))
    n_items = s.integer(1, 3)
    keys = key_literals(s, n_items + 2)
    if context is None:
        lines, indent = block_context(s) if n_items < 3 else ("", "")
        head, close = [
            (f"{identifier(s)} = ", ""),
            (f"{identifier(s)}.update(", ")"),
            (f"{function_name(s)}(", ")"),
        ][s.integer(0, 2)]
        lead, after = f"{lines}{indent}{head}", f"{close}\n"
    else:
        lead, after = context
    items = [f"{key}: {_dict_value(s)}" if is_dict else key for key in keys[:n_items]]
    prefix = f"{lead}{{{', '.join(items)}, {keys[n_items]}"
    features: dict[str, FeatureValue] = {"container": "dict" if is_dict else "set", "n_items": n_items}
    if is_dict:
        return _example(prefix, ":", ",", f" {_dict_value(s)}}}{after}", features, open_brace=len(lead))
    return _example(prefix, ",", ":", f" {keys[-1]}}}{after}", features, open_brace=len(lead))


# call_arity ---------------------------------------------------------------------------------------


def _argument(s: Sampler) -> str:
    return s.choice((digit, lambda s: s.choice(PARAMS)))(s)


def _definition(s: Sampler, name: str, n_params: int) -> str:
    params = parameters(s, n_params)
    return f"def {name}({params}):\n{INDENT}return {params.split(',')[0]}\n"


MAX_PREFIX = 72  # task prefixes stay short (the suite's tests hold every task to it)


def gen_call_arity(s: Sampler) -> TaskExample:
    """Two long definitions plus a long call can overrun the bound: draw again in that (rare) case."""
    while True:
        example = _call_arity_once(s)
        if len(example.prefix) <= MAX_PREFIX:
            return example


def _call_arity_once(s: Sampler) -> TaskExample:
    more = s.boolean()
    n_params = s.integer(2, 3) if more else s.integer(1, 3)
    n_args = s.integer(1, n_params - 1) if more else n_params
    n_defs = 2 if s.boolean() else 1
    names = distinct(s, [name for name in DEF_NAMES if len(name) <= 3], n_defs)
    called = s.integer(0, n_defs - 1)
    text = ""
    def_open = 0
    for k, name in enumerate(names):
        if k == called:
            def_open = len(text) + len(f"def {name}")
            text += _definition(s, name, n_params)
        else:
            text += _definition(s, name, s.integer(1, 3))
    if n_defs == 1:
        text += s.choice(("", f"{identifier(s)} = "))
    call_open = len(text) + len(names[called])
    prefix = f"{text}{names[called]}(" + ", ".join(_argument(s) for _ in range(n_args))
    features: dict[str, FeatureValue] = {
        "more_args": more, "n_params": n_params, "n_args": n_args, "n_defs": n_defs,
    }
    if more:
        rest = " " + ", ".join(_argument(s) for _ in range(n_params - n_args)) + ")\n"
        return _example(prefix, ",", ")", rest, features, def_open=def_open, call_open=call_open)
    return _example(prefix, ")", ",", "\n", features, def_open=def_open, call_open=call_open)


# the suite ----------------------------------------------------------------------------------------

CLOSING_QUOTE = Task(
    name="closing_quote",
    description="Close an open string literal with the same quote character that opened it.",
    generate=gen_closing_quote,
    generate_in=gen_closing_quote_in,
    features={
        "opening_quote": "the quote character that opened the literal ('\"' or \"'\")",
        "body_length": "number of characters between the opening quote and the answer",
        "earlier_quote": "the quote of the last string literal before the open one ('none' if there is none)",
    },
    positions={
        "opening_quote": "the opening quote of the unclosed string",
        "answer": "the last character of the string body",
    },
    answers="'\"' vs \"'\"",
    tags=("strings",),
    domains=_closing_quote_domains(),
)

BRACKET_NESTING = Task(
    name="bracket_nesting",
    description="After a ']' in a nested list literal, close another level if one is still open, else end the line.",
    generate=gen_bracket_nesting,
    features={
        "depth": "number of '[' still open at the answer (0 means the literal is complete)",
        "max_depth": "deepest nesting level reached in the literal",
    },
    positions={
        "last_open": "the innermost still-open '[' (the literal's first '[' when depth is 0)",
        "answer": "the ']' that ends the prefix",
    },
    answers="']' vs '\\n'",
    tags=("brackets", "counting"),
)

BRACKET_TYPE = Task(
    name="bracket_type",
    description="Close the innermost open bracket of a mixed call/subscript nest with its matching closer.",
    generate=gen_bracket_type,
    generate_in=gen_bracket_type_in,
    features={
        "innermost": "the innermost unclosed bracket ('(' or '[')",
        "depth": "number of unclosed brackets at the answer",
    },
    positions={
        "innermost_open": "the innermost unclosed bracket",
        "answer": "the last character of the atom inside it",
    },
    answers="')' vs ']'",
    tags=("brackets",),
)

VAR_TYPE = Task(
    name="var_type",
    description="Continue a use of a variable according to its bound type: '.add' for a set, ' +=' for a string.",
    generate=gen_var_type,
    features={
        "var_type": "type of the used variable's value ('set' or 'str')",
        "n_vars": "number of variables bound before the use",
    },
    positions={
        "binding": "first character of the used variable's name where it is bound",
        "use": "first character of the variable's name in the final use",
        "answer": "last character of the variable's name in the final use",
    },
    answers="'.' vs ' '",
    tags=("variables", "binding"),
)

EQ_VS_ASSIGN = Task(
    name="eq_vs_assign",
    description="After 'target =', continue with '=' in an if/elif/while condition and with ' ' in an assignment.",
    generate=gen_eq_vs_assign,
    features={
        "in_condition": "whether the '=' is inside an if/elif/while condition",
        "keyword": "the condition's keyword ('if', 'elif', 'while'), '' for assignments",
    },
    positions={
        "keyword": "first character of the keyword (of the statement when there is none)",
        "answer": "the '=' that ends the prefix",
    },
    answers="'=' vs ' '",
    tags=("syntax",),
)

HEADER_COLON = Task(
    name="header_colon",
    description="End a compound statement header with ':' and a simple statement with a newline.",
    generate=gen_header_colon,
    features={
        "is_header": "whether the line is a compound statement header",
        "keyword": "the header's keyword ('if', 'for', 'def', 'else', ...), '' for simple statements",
    },
    positions={
        "line_start": "first character of the line's statement (after indentation)",
        "answer": "last character of the line's content",
    },
    answers="':' vs '\\n'",
    tags=("syntax",),
)

FOR_IN = Task(
    name="for_in",
    description="After a target name, continue with 'in' when it follows 'for' and with '=' at statement start.",
    generate=gen_for_in,
    features={"in_for": "whether the target follows 'for' (loop or comprehension)"},
    positions={
        "name": "first character of the loop or assignment target",
        "answer": "the space after the target",
    },
    answers="'i' vs '='",
    tags=("syntax",),
)

DICT_OR_SET = Task(
    name="dict_or_set",
    description="After a further element of a brace literal, continue with ':' in a dict and ',' in a set.",
    generate=gen_dict_or_set,
    generate_in=gen_dict_or_set_in,
    features={
        "container": "'dict' or 'set', as shown by the complete items",
        "n_items": "number of complete items before the answer's element",
    },
    positions={
        "open_brace": "the '{' that opens the literal",
        "answer": "last character of the element being written",
    },
    answers="':' vs ','",
    tags=("brackets", "syntax"),
)

CALL_ARITY = Task(
    name="call_arity",
    description="In a call to a function defined above, continue with ',' while parameters remain, else ')'.",
    generate=gen_call_arity,
    features={
        "more_args": "whether the call still lacks arguments",
        "n_params": "number of parameters of the called function",
        "n_args": "number of arguments written so far",
        "n_defs": "number of functions defined before the call",
    },
    positions={
        "def_open": "the '(' of the called function's definition",
        "call_open": "the '(' of the call",
        "answer": "last character of the latest argument",
    },
    answers="',' vs ')'",
    tags=("counting", "binding"),
)

BUILTIN_TASKS: tuple[Task, ...] = (
    CLOSING_QUOTE,
    BRACKET_NESTING,
    BRACKET_TYPE,
    VAR_TYPE,
    EQ_VS_ASSIGN,
    HEADER_COLON,
    FOR_IN,
    DICT_OR_SET,
    CALL_ARITY,
)
