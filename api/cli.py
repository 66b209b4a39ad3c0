"""`workjet`: start the local service, and make, list or revoke API keys.

workjet up                      Prefect server, worker, facade (and stand-in)
workjet keys create --org ID    print a new key for an organization, once
workjet keys list
workjet keys revoke PREFIX
workjet budget set --org ID --monthly-usd N    an organization's monthly budget
workjet budget show --org ID
workjet budget clear --org ID
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from api.database import database_url, is_postgresql
from api.settings import PROJECT_DIR
from api.stack import WORK_POOL, Stack, StackConfig, stack_environment


def _config(args: argparse.Namespace) -> StackConfig:
    home = Path(os.environ.get("WORKJET_HOME", PROJECT_DIR / ".workjet"))
    return StackConfig(
        home=home,
        api_port=int(os.environ.get("WORKJET_API_PORT", "8000")),
        prefect_port=int(os.environ.get("WORKJET_PREFECT_PORT", "4200")),
        standin_port=int(os.environ.get("WORKJET_STANDIN_PORT", "8765")),
        database_url=database_url(home),
    )


def _use_stack_environment(config: StackConfig) -> None:
    """Point this process's Prefect client at the stack's server.

    Prefect reads its settings once, when it is first imported, so this runs before
    anything imports Prefect (hence the imports inside the functions below).
    """
    for name, value in stack_environment(config).items():
        if name.startswith(("PREFECT_", "WORKJET_")):
            os.environ.setdefault(name, value)


async def _prepare(config: StackConfig) -> str | None:
    from prefect.client.orchestration import get_client

    from api.bootstrap import bootstrap, ensure_default_key

    async with get_client() as client:
        await bootstrap(client, WORK_POOL)
        return await ensure_default_key(client, config.home / "default-api-key")


def up(args: argparse.Namespace) -> int:
    config = _config(args)
    _use_stack_environment(config)
    if "prefect" in sys.modules:
        raise RuntimeError("Prefect was imported before its settings were made")
    stack = Stack(config)
    stopping = threading.Event()
    # Both signals are handled: a shell starts background jobs with SIGINT ignored,
    # so Ctrl-C's KeyboardInterrupt alone would not stop `workjet up &`.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: stopping.set())

    if config.uses_standin:
        print(
            "No ANTHROPIC_API_KEY is set: runs use a local STAND-IN for Anthropic's"
            f" Messages API on port {config.standin_port}.\nIts answers are canned"
            " text, not a model's. Set ANTHROPIC_API_KEY to call Anthropic.",
            flush=True,
        )
    try:
        if config.uses_standin:
            stack.start_standin()
        where = str(config.home)
        if config.database_url and is_postgresql(config.database_url):
            where = make_url(config.database_url).render_as_string(hide_password=True)
        print(f"Starting Prefect server (data in {where})...", flush=True)
        stack.start_prefect()
        key = stack.bootstrap()
        stack.start_worker()
        stack.start_api()

        _announce(config, key)
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        print("\nStopping...", flush=True)
        stack.stop()
    return 0


def _announce(config: StackConfig, key: str | None) -> None:
    key_file = config.home / "default-api-key"
    print(f"\nAutomations API  {config.api_url}", flush=True)
    print(f"Prefect UI       {config.ui_url}", flush=True)
    print(f"Logs             {config.home / 'logs'}", flush=True)
    if key:
        print(f"\nAPI key of the default organization (shown once): {key}")
        print(f"It is also in {key_file} (readable by you only).")
    elif key_file.exists():
        print(f"\nThe default organization's first key is in {key_file}.")
    print("Press Ctrl-C to stop.", flush=True)


async def _keys(args: argparse.Namespace) -> int:
    from prefect.client.orchestration import get_client

    from api.keys import create_key, list_keys, revoke_key

    async with get_client() as client:
        if args.keys_command == "create":
            try:
                key = await create_key(client, args.org, args.label)
            except ValueError as error:
                print(error, file=sys.stderr)
                return 2
            print(key)
        elif args.keys_command == "list":
            for item in await list_keys(client):
                print(
                    f"{item.prefix}...  {item.organization:<20} {item.created_at}"
                    f"  {item.label}"
                )
        else:
            try:
                organization = await revoke_key(client, args.prefix)
            except ValueError as error:
                print(error, file=sys.stderr)
                return 1
            print(f"revoked 1 key of organization {organization}")
    return 0


async def _budget(args: argparse.Namespace) -> int:
    from prefect.client.orchestration import get_client

    from api.budgets import clear_org_budget, read_org_budget, set_org_budget

    async with get_client() as client:
        try:
            if args.budget_command == "set":
                await set_org_budget(client, args.org, args.monthly_usd)
            elif args.budget_command == "clear":
                await clear_org_budget(client, args.org)
            budget, month, spent = await read_org_budget(client, args.org)
        except ValueError as error:
            print(error, file=sys.stderr)
            return 2
    limit = f"{budget:g} USD" if budget is not None else "no budget"
    print(f"{args.org}: {limit}; {spent:.2f} USD spent in {month} (UTC)")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(prog="workjet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start the whole local service")
    commands.add_parser(
        "bootstrap", help="prepare a running Prefect server; print a first key once"
    )

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="make a key and print it once")
    create.add_argument("--org", required=True, help="organization id, e.g. acme")
    create.add_argument("--label", default="", help="what the key is for")
    key_commands.add_parser("list", help="list keys (prefixes only)")
    revoke = key_commands.add_parser("revoke", help="revoke keys by prefix or hash")
    revoke.add_argument("prefix")

    budget = commands.add_parser("budget", help="an organization's monthly budget")
    budget_commands = budget.add_subparsers(dest="budget_command", required=True)
    for name, text in (
        ("set", "set the monthly budget in US dollars"),
        ("show", "show the budget and this month's spend"),
        ("clear", "remove the budget"),
    ):
        command = budget_commands.add_parser(name, help=text)
        command.add_argument("--org", required=True, help="organization id, e.g. acme")
        if name == "set":
            command.add_argument("--monthly-usd", type=float, required=True)

    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args)

    config = _config(args)
    _use_stack_environment(config)
    if args.command == "bootstrap":
        key = asyncio.run(_prepare(config))
        if key:
            print(key)
        return 0
    try:
        if args.command == "budget":
            return asyncio.run(_budget(args))
        return asyncio.run(_keys(args))
    except httpx.TransportError as error:
        print(
            f"cannot reach Prefect at {os.environ['PREFECT_API_URL']} ({error});"
            " is `workjet up` running with the same WORKJET_* settings?",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
