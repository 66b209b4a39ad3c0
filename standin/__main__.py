"""Run the stand-in: `python -m standin --host 127.0.0.1 --port 8765`."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from standin.app import create_app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m standin",
        description="A local stand-in for Anthropic's Messages API (not a model).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    print(
        f"Anthropic Messages API stand-in on http://{args.host}:{args.port}"
        " - answers are canned text, not a model's.",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
