"""The shared docstring parts and the spelled-out keywords
(numa_numpy._policies.docstrings), on functions made here."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from typing_extensions import Unpack

from numa_numpy._policies import docstrings


def test_a_placeholder_line_becomes_its_part_indented_like_it():
    name = next(iter(docstrings.DOC_PARTS))
    doc = f"Summary.\n\n    {{{name}}}\n"
    filled = docstrings.fill_doc(doc)
    part = docstrings.DOC_PARTS[name]
    assert filled.startswith("Summary.\n\n")
    assert all(line.startswith("    ") or not line for line in filled.splitlines()[2:])
    assert part.splitlines()[0].strip() in filled and "{" + name + "}" not in filled
    assert docstrings.fill_doc("no {placeholder} inline") == "no {placeholder} inline"


class _Bundle(TypedDict, total=False):
    node: int
    strict: bool


def test_a_bundle_of_keywords_is_spelled_out_in_the_signature():
    def made(shape: int, **numa: Unpack[_Bundle]) -> None:
        """{placement_keywords}"""

    docstrings.show_keywords(made)
    params = inspect.signature(made).parameters
    assert list(params) == ["shape", "node", "strict"]
    assert all(params[k].kind is inspect.Parameter.KEYWORD_ONLY for k in ("node", "strict"))
    assert params["strict"].default == docstrings._DEFAULTS.get("strict")


def test_a_function_without_a_bundle_keeps_its_signature():
    def plain(a: int, **kwargs: int) -> None:
        pass

    before = inspect.signature(plain)
    docstrings.show_keywords(plain)
    assert inspect.signature(plain) == before and "__signature__" not in vars(plain)


def test_document_fills_a_classs_docstring_and_its_init_signature():
    name = next(iter(docstrings.DOC_PARTS))

    @docstrings.document
    class Made:
        __doc__ = f"Made.\n\n{{{name}}}\n"

        def __init__(self, **numa: Unpack[_Bundle]) -> None:
            pass

    assert Made.__doc__ == docstrings.fill_doc(f"Made.\n\n{{{name}}}\n") != f"Made.\n\n{{{name}}}\n"
    assert list(inspect.signature(Made).parameters) == ["node", "strict"]
