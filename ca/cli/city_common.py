"""What the ``jtca city`` commands share: output, the acting officer, the time."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ca.authority import open_authority
from ca.clock import SystemClock
from ca.officers import actor_of
from policies.rules import Actor


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else text)


def _actor(args: argparse.Namespace) -> tuple[Any, Actor]:
    engine = open_authority().engine
    return engine, actor_of(engine, args.actor)


def _now() -> int:
    return SystemClock().now()
