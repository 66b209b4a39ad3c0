"""The model's Markdown as Slack's mrkdwn.

The Markdown is parsed by markdown-it (CommonMark, with tables and strikethrough)
and the syntax tree written out in Slack's markup: `*bold*`, `_italic_`,
`~strike~`, `<url|label>`, bullet characters for lists, headings as bold lines,
tables as aligned text in a code block (Slack has no tables). Slack gives `&`, `<`
and `>` a meaning of their own, so they are escaped everywhere, code included:
Slack's own documentation asks for exactly these three escapes.
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

# Raw HTML in the model's output stays text: it means nothing to Slack.
_PARSER = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
_INDENT = "    "
_RULE = "──────────"


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    root = SyntaxTreeNode(_PARSER.parse(markdown))
    return "\n".join(_blocks(root.children, tight=False)).strip("\n")


def _blocks(nodes: list[SyntaxTreeNode], *, tight: bool) -> list[str]:
    lines: list[str] = []
    for node in nodes:
        if lines and not tight:
            lines.append("")
        lines.extend(_block(node))
    return lines


def _block(node: SyntaxTreeNode) -> list[str]:
    kind = node.type
    if kind == "paragraph":
        return _inline(node.children[0]).split("\n")
    if kind == "heading":
        return [f"*{_plain(node)}*"]
    if kind in ("bullet_list", "ordered_list"):
        return _list(node)
    if kind == "blockquote":
        quoted = _blocks(node.children, tight=False)
        return [f"> {line}" if line else ">" for line in quoted]
    if kind in ("fence", "code_block"):
        return ["```", *escape(node.content.rstrip("\n")).split("\n"), "```"]
    if kind == "hr":
        return [_RULE]
    if kind == "table":
        return _table(node)
    return _plain(node).split("\n")


def _list(node: SyntaxTreeNode) -> list[str]:
    ordered = node.type == "ordered_list"
    start = int(str(node.attrs.get("start", 1)))
    lines: list[str] = []

    for number, item in enumerate(node.children, start=start):
        marker = f"{number}." if ordered else "•"
        tight = _is_tight(item)
        body = _blocks(item.children, tight=tight) or [""]
        if lines and not tight:
            lines.append("")
        lines.append(f"{marker} {body[0]}")
        lines.extend(f"{_INDENT}{line}" if line else "" for line in body[1:])
    return lines


def _is_tight(item: SyntaxTreeNode) -> bool:
    # markdown-it hides the paragraphs of a tight list; a loose one keeps them.
    for child in item.children:
        tokens = child.nester_tokens
        if child.type == "paragraph" and tokens and tokens.opening.hidden:
            return True
    return False


def _inline(node: SyntaxTreeNode) -> str:
    parts: list[str] = []
    for child in node.children:
        kind = child.type
        if kind == "text":
            parts.append(escape(child.content))
        elif kind in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif kind == "strong":
            parts.append(f"*{_inline(child)}*")
        elif kind == "em":
            parts.append(f"_{_inline(child)}_")
        elif kind == "s":
            parts.append(f"~{_inline(child)}~")
        elif kind == "code_inline":
            parts.append(f"`{escape(child.content)}`")
        elif kind == "link":
            parts.append(_link(str(child.attrs["href"]), _plain(child)))
        elif kind == "image":
            source = str(child.attrs["src"])
            parts.append(_link(source, _plain(child) or escape(source)))
        else:
            parts.append(_plain(child))
    return "".join(parts)


def _link(href: str, label: str) -> str:
    # `|` ends the address and `>` the link in Slack's syntax; percent-encoding
    # keeps the address the same for the browser.
    address = href.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")
    if label in ("", escape(href), escape(href.removeprefix("mailto:"))):
        return f"<{address}>"
    return f"<{address}|{label}>"


def _plain(node: SyntaxTreeNode) -> str:
    """The text of a node without its formatting, escaped."""
    return escape(_raw_text(node))


def _raw_text(node: SyntaxTreeNode) -> str:
    if node.type in ("text", "code_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    if node.type == "image" and not node.children:
        return node.content
    return "".join(_raw_text(child) for child in node.children)


def _table(node: SyntaxTreeNode) -> list[str]:
    rows = [
        [_raw_text(cell).strip() for cell in row.children]
        for part in node.children
        for row in part.children
    ]
    columns = max(len(row) for row in rows)
    widths = [
        max(len(row[index]) for row in rows if index < len(row))
        for index in range(columns)
    ]

    lines = [
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=False)
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return ["```", *(escape(line) for line in lines), "```"]
