"""``sipguard schema config|policy``: print the JSON Schema of the config or the policy.

Editors (VS Code's YAML extension, JetBrains, vim/neovim with yaml-language-server) use it to
complete keys and flag unknown ones as the file is typed; see ``sipguard/jsonschema.py``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("schema", help="print the JSON Schema of the config or the policy, for editors")
    p.add_argument("which", choices=("config", "policy"), help="config: sipguard.yaml; policy: the policy file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sipguard.jsonschema import render

    print(render(args.which), end="")
    return 0
