"""The model's Markdown as Slack's mrkdwn (flows.mrkdwn)."""

from __future__ import annotations

import pytest

from flows.mrkdwn import to_mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and __bold__", "*bold* and *bold*"),
        ("*italic* and _italic_", "_italic_ and _italic_"),
        ("~~gone~~", "~gone~"),
        ("`x < y && z`", "`x &lt; y &amp;&amp; z`"),
        (
            "[the guide](https://docs.example/guide)",
            "<https://docs.example/guide|the guide>",
        ),
        ("<https://docs.example>", "<https://docs.example>"),
        ("<team@example.com>", "<mailto:team@example.com>"),
        ("[a](https://x.example/?q=a|b)", "<https://x.example/?q=a%7Cb|a>"),
        ("# Outdated pages", "*Outdated pages*"),
        ("## Section with **bold**", "*Section with bold*"),
        ("Tom & Jerry <b>hi</b>", "Tom &amp; Jerry &lt;b&gt;hi&lt;/b&gt;"),
        ("line one\nline two", "line one\nline two"),
        ("> quoted\n> more", "> quoted\n> more"),
        ("***", "──────────"),
    ],
)
def test_inline_and_simple_blocks(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_lists_use_bullets_numbers_and_indentation() -> None:
    markdown = "- first\n- second\n  1. nested\n  2. again\n\n7. seven\n8. eight"

    assert to_mrkdwn(markdown) == (
        "• first\n• second\n    1. nested\n    2. again\n\n7. seven\n8. eight"
    )


def test_code_block_keeps_its_text_and_escapes_slack_characters() -> None:
    markdown = "```python\nif a < b:\n    print('**not bold**')\n```"

    assert to_mrkdwn(markdown) == "```\nif a &lt; b:\n    print('**not bold**')\n```"


def test_table_becomes_aligned_text_in_a_code_block() -> None:
    markdown = "| Page | State |\n|---|---|\n| Install | outdated |\n| FAQ | ok |"

    assert to_mrkdwn(markdown) == (
        "```\nPage     State\n-------  --------\nInstall  outdated\nFAQ      ok\n```"
    )


def test_paragraphs_are_separated_by_a_blank_line() -> None:
    assert to_mrkdwn("One.\n\nTwo.\n\n\n\nThree.") == "One.\n\nTwo.\n\nThree."


def test_unsafe_link_stays_text() -> None:
    assert to_mrkdwn("[click](javascript:alert(1))") == "[click](javascript:alert(1))"


def test_empty_and_blank_markdown_give_nothing() -> None:
    assert to_mrkdwn("") == ""
    assert to_mrkdwn("  \n\n ") == ""
