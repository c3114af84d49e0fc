"""Program composition, cleaning of model replies, and the AST facts about aux + main code."""

from __future__ import annotations

import textwrap

import pytest

from collabcoder.analyzers.protocol.program import (
    ProgramFacts,
    analyze_program,
    compose_layout,
    compose_program,
    extract_imports,
    extract_prompt_context,
    function_signature,
)
from collabcoder.analyzers.protocol.replies import extract_function

PROMPT = textwrap.dedent(
    '''\
    from typing import List
    import math


    def below_zero(operations: List[int]) -> bool:
        """Return True if the running balance ever drops below zero.
    >>> below_zero([1, 2, -4])
    True
    """
    '''
)

AUX = textwrap.dedent(
    """\
    def aux(operations):
        balance = 0
        prefix = []
        for op in operations:
            balance += op
            prefix.append(balance)
        return prefix
    """
)

MAIN_USES_AUX = textwrap.dedent(
    """\
    def below_zero(operations):
        prefix = aux(operations)
        return any(b < 0 for b in prefix)
    """
)


def facts(main: str, aux: str = AUX, entry: str = "below_zero") -> ProgramFacts:
    return analyze_program(aux, main, entry)


# --- prompt context and composition ----------------------------------------------------------


def test_extract_imports_keeps_top_level_imports_in_order() -> None:
    assert extract_imports(PROMPT) == "from typing import List\nimport math"


def test_extract_imports_from_a_prompt_that_does_not_parse() -> None:
    broken = "import re\nfrom typing import Dict\n\ndef f(x):\n    '''unterminated\n"
    assert extract_imports(broken) == "import re\nfrom typing import Dict"


def test_prompt_context_keeps_complete_helpers_and_drops_the_stub() -> None:
    prompt = textwrap.dedent(
        '''\
        def encode_shift(s: str):
            """shift every character by 5"""
            return "".join(chr(((ord(ch) + 5 - ord("a")) % 26) + ord("a")) for ch in s)


        def decode_shift(s: str):
            """takes as input string encoded with encode_shift."""
        '''
    )
    context = extract_prompt_context(prompt)
    assert "def encode_shift" in context
    assert "def decode_shift" not in context


def test_compose_program_orders_context_aux_main() -> None:
    program = compose_program(PROMPT, AUX, MAIN_USES_AUX)
    assert program.index("from typing import List") < program.index("def aux")
    assert program.index("def aux") < program.index("def below_zero")
    assert "below_zero([1, 2, -4])" not in program  # the stub's docstring is not copied
    namespace: dict[str, object] = {}
    exec(compile(program, "<program>", "exec"), namespace)
    below_zero = namespace["below_zero"]
    assert callable(below_zero)
    assert below_zero([1, 2, -4]) is True


def test_single_agent_program_has_no_aux_part() -> None:
    layout = compose_layout(PROMPT, "", MAIN_USES_AUX)
    assert [role for role, _, _ in layout.parts] == ["context", "main"]


def test_layout_maps_program_lines_back_to_each_part() -> None:
    layout = compose_layout(PROMPT, AUX, MAIN_USES_AUX)
    lines = layout.program.splitlines()
    aux_return = lines.index("    return prefix") + 1
    main_return = lines.index("    return any(b < 0 for b in prefix)") + 1
    assert layout.locate(aux_return) == ("aux", 7)
    assert layout.locate(main_return) == ("main", 3)
    assert layout.locate(1) == ("context", 1)
    assert layout.locate(None) is None


def test_function_signature_keeps_annotations() -> None:
    sig = function_signature(PROMPT, "below_zero")
    assert sig == "def below_zero(operations: List[int]) -> bool:"
    assert function_signature(PROMPT, "missing") is None


# --- extract_function ----------------------------------------------------------------------


def test_clean_fenced_reply_with_prose_and_demo_code() -> None:
    reply = textwrap.dedent(
        '''\
        Sure! Here is the helper:

        ```python
        import math

        def aux(n):
            """True if n is prime."""
            if n < 2:
                return False
            return all(n % d for d in range(2, math.isqrt(n) + 1))

        print(aux(7))
        ```

        It checks every divisor up to the square root.'''
    )
    code = extract_function(reply, "aux")
    assert code.startswith("import math\n")
    assert "def aux(n):" in code
    assert "print(" not in code
    assert "Sure" not in code and "square root" not in code
    compile(code, "<aux>", "exec")


def test_clean_takes_the_last_fenced_block_that_defines_the_function() -> None:
    reply = (
        "First try:\n```python\ndef f(x):\n    return x\n```\n"
        "Fixed version:\n```python\ndef f(x):\n    return x + 1\n```\n"
        "Example output:\n```text\n2\n```"
    )
    assert extract_function(reply, "f") == "def f(x):\n    return x + 1"


def test_clean_unfenced_reply_with_prose_and_trailing_tests() -> None:
    reply = textwrap.dedent(
        """\
        Here's my solution, it's simple:
        def f(xs):
            total = 0
            for x in xs:
                total += x
            return total

        # quick check
        assert f([1, 2]) == 3
        if __name__ == "__main__":
            print(f([1]))
        This runs in linear time."""
    )
    assert extract_function(reply, "f") == (
        "def f(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total"
    )


def test_clean_prefers_the_full_definition_over_a_repeated_signature() -> None:
    reply = textwrap.dedent(
        """\
        def x_or_y(n, x, y):
            '''Return x if n is prime.

        For example:
        >>> x_or_y(7, 34, 12)
        34
        '''
        def x_or_y(n, x, y):
            '''Return x if n is prime.
        '''
            if aux(n):
                return x
            return y
        """
    )
    code = extract_function(reply, "x_or_y", exclude={"aux"})
    assert code.endswith("    if aux(n):\n        return x\n    return y")
    assert code.count("def x_or_y") == 1
    compile(code, "<main>", "exec")


def test_clean_signature_line_repeated_without_body() -> None:
    reply = "def f(x):\ndef f(x):\n    return 2 * x\n"
    assert extract_function(reply, "f") == "def f(x):\n    return 2 * x"


def test_clean_keeps_helpers_the_function_uses_but_not_excluded_names() -> None:
    reply = textwrap.dedent(
        """\
        ```python
        LIMIT = 10

        def aux(x):
            return x  # the main agent must not replace the helper agent's aux

        def _clip(v):
            return min(v, LIMIT)

        def unrelated():
            return 0

        def main_fn(x):
            return _clip(aux(x))
        ```"""
    )
    code = extract_function(reply, "main_fn", exclude={"aux"})
    assert "LIMIT = 10" in code and "def _clip" in code and "def main_fn" in code
    assert "def aux" not in code and "def unrelated" not in code


def test_clean_body_only_continuation_is_joined_to_the_prompt_signature() -> None:
    reply = (
        "    balance = 0\n"
        "    for op in operations:\n"
        "        balance += op\n"
        "        if balance < 0:\n"
        "            return True\n"
        "    return False\n"
        "<|endoftext|>"
    )
    code = extract_function(reply, "below_zero", prompt=PROMPT)
    # The prompt's imports come along, so the cleaned code stands on its own.
    assert code.startswith("from typing import List\nimport math\n")
    assert "def below_zero(operations: List[int]) -> bool:" in code
    assert code.endswith("    return False")
    compile(code, "<main>", "exec")


def test_clean_keeps_a_broken_function_so_it_reads_as_a_syntax_error() -> None:
    reply = "Here:\ndef f(x)\n    return x +\n\nHope this helps!"
    code = extract_function(reply, "f")
    assert code == "def f(x)\n    return x +"
    assert facts(code, aux="", entry="f").syntax_ok is False


def test_clean_removes_chat_tokens_and_think_blocks() -> None:
    reply = (
        "<think>maybe def f(x): return 0</think>```python\ndef f(x):\n    return 1\n```<|im_end|>"
    )
    assert extract_function(reply, "f") == "def f(x):\n    return 1"


def test_clean_dedents_an_indented_function() -> None:
    reply = "    def f(x):\n        '''doc\n    '''\n        return x\n"
    code = extract_function(reply, "f")
    assert code.startswith("def f(x):")
    compile(code, "<f>", "exec")


@pytest.mark.parametrize("reply", ["", "I cannot help with that.", "def g(x):\n    return x\n"])
def test_clean_returns_empty_when_the_function_is_absent(reply: str) -> None:
    assert extract_function(reply, "f") == ""


# --- analyze_program -------------------------------------------------------------------------


def test_collaborating_program() -> None:
    f = facts(MAIN_USES_AUX)
    assert f.aux_defined and f.main_defined and f.syntax_ok and f.runnable
    assert f.main_calls_aux
    assert not f.main_is_thin_wrapper
    assert not f.aux_result_ignored
    assert not f.single_agent


@pytest.mark.parametrize(
    "main",
    [
        "def below_zero(operations):\n    return aux(operations)\n",
        "def below_zero(ops):\n    '''doc'''\n    result = aux(ops)\n    return result\n",
        "def below_zero(*args, **kwargs):\n    return aux(*args, **kwargs)\n",
        "def below_zero(operations):\n    aux(operations)\n",
    ],
    ids=["return-call", "assign-return", "star-args", "bare-call"],
)
def test_thin_wrappers(main: str) -> None:
    assert facts(main).main_is_thin_wrapper


@pytest.mark.parametrize(
    "main",
    [
        "def below_zero(operations):\n    return aux(sorted(operations))\n",
        "def below_zero(operations):\n    return min(aux(operations)) < 0\n",
        MAIN_USES_AUX,
    ],
)
def test_not_thin_wrappers(main: str) -> None:
    assert not facts(main).main_is_thin_wrapper


def test_bare_call_discards_the_result() -> None:
    main = "def below_zero(operations):\n    aux(operations)\n    return False\n"
    f = facts(main)
    assert f.main_calls_aux and f.aux_result_ignored
    assert f.ignored_aux_calls == (2,)


def test_assigned_but_never_read_discards_the_result() -> None:
    main = "def below_zero(operations):\n    prefix = aux(operations)\n    return False\n"
    assert facts(main).aux_result_ignored


def test_underscore_target_discards_the_result() -> None:
    main = "def below_zero(ops):\n    _ = aux(ops)\n    return sum(ops) < 0\n"
    assert facts(main).aux_result_ignored


def test_discarded_list_comprehension_of_aux_calls() -> None:
    main = "def below_zero(ops):\n    [aux(o) for o in ops]\n    return False\n"
    assert facts(main).aux_result_ignored


def test_value_read_in_a_later_loop_iteration_is_used() -> None:
    main = textwrap.dedent(
        """\
        def below_zero(ops):
            last = None
            for op in ops:
                if last is not None and last[-1] < 0:
                    return True
                last = aux([op])
            return False
        """
    )
    assert not facts(main).aux_result_ignored


@pytest.mark.parametrize(
    "main",
    [
        "def below_zero(ops):\n    print(aux(ops))\n    return False\n",
        "def below_zero(ops):\n    state = {}\n    state['p'] = aux(ops)\n    return bool(state)\n",
        "def below_zero(ops):\n    if aux(ops):\n        return True\n    return False\n",
        "def below_zero(ops):\n    total = []\n    total += aux(ops)\n    return min(total) < 0\n",
    ],
    ids=["argument", "subscript-target", "condition", "augmented"],
)
def test_results_that_are_used(main: str) -> None:
    f = facts(main)
    assert f.main_calls_aux and not f.aux_result_ignored


def test_passing_aux_as_a_value_counts_as_using_it() -> None:
    main = "def below_zero(ops):\n    return any(map(aux, [ops]))\n"
    assert facts(main).main_calls_aux


def test_calls_through_a_helper_of_main_count() -> None:
    main = textwrap.dedent(
        """\
        def _check(ops):
            aux(ops)
            return True

        def below_zero(ops):
            return _check(ops)
        """
    )
    f = facts(main)
    assert f.main_calls_aux and f.aux_result_ignored and f.ignored_aux_calls == (2,)


def test_a_local_named_aux_is_not_the_helper() -> None:
    main = "def below_zero(ops):\n    aux = sorted(ops)\n    return aux[0] < 0\n"
    assert not facts(main).main_calls_aux


def test_main_redefining_aux_hides_the_helper_agent() -> None:
    main = "def aux(ops):\n    return ops\n\ndef below_zero(ops):\n    return min(aux(ops)) < 0\n"
    f = facts(main)
    assert f.main_redefines_aux and not f.main_calls_aux


def test_missing_main() -> None:
    f = facts("def something_else(ops):\n    return aux(ops)\n")
    assert not f.main_found and not f.main_defined and not f.runnable


def test_main_without_return_is_not_defined() -> None:
    f = facts("def below_zero(ops):\n    print(aux(ops))\n")
    assert f.main_found and not f.main_returns and not f.main_defined


def test_aux_without_return_is_found_but_not_defined() -> None:
    f = facts(MAIN_USES_AUX, aux="def aux(ops):\n    print(ops)\n")
    assert f.aux_found and not f.aux_defined


def test_syntax_error_is_located_in_the_agent_code() -> None:
    main = "def below_zero(ops):\n    return any(b < 0 for b in aux(ops)\n"
    f = facts(main)
    assert not f.syntax_ok and f.main_found
    assert f.syntax_error_role == "main"
    assert f.syntax_error is not None and f.syntax_error.line == 2


def test_syntax_error_in_aux() -> None:
    f = facts(MAIN_USES_AUX, aux="def aux(ops):\nreturn ops\n")
    assert not f.syntax_ok and f.syntax_error_role == "aux"
    assert f.aux_syntax_error is not None and f.main_syntax_error is None


def test_compile_time_errors_count_as_syntax_errors() -> None:
    f = facts(MAIN_USES_AUX, aux="def aux(ops):\n    return ops\nreturn 1\n")
    assert not f.syntax_ok and f.syntax_error_role == "aux"


def test_single_agent_facts() -> None:
    f = analyze_program("", "def below_zero(ops):\n    return False\n", "below_zero")
    assert f.single_agent and not f.aux_found and not f.main_calls_aux and f.runnable


def test_empty_main_is_neither_defined_nor_syntactically_ok() -> None:
    f = facts("")
    assert not f.main_found and not f.syntax_ok and f.syntax_error is None


def test_clean_expands_leading_tabs_but_not_tabs_in_strings() -> None:
    reply = 'def f(x):\n\tif x:\n\t\treturn "a\tb"\n\treturn ""\nprint(f(1))'
    code = extract_function(reply, "f")
    assert code == 'def f(x):\n        if x:\n                return "a\tb"\n        return ""'


def test_main_calling_a_missing_aux_is_still_reported() -> None:
    f = analyze_program("", MAIN_USES_AUX, "below_zero")
    assert f.single_agent and f.main_calls_aux and not f.aux_found
