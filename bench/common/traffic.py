"""Traffic counters: Redis request flights and MongoDB commands, counted only while asked to."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pymongo.monitoring
import redis.connection


@dataclass
class Traffic:
    """Round trips (request flights), commands, statements inside them, and server time, while counting."""

    round_trips: int = 0
    commands: Counter[str] = field(default_factory=Counter)
    statements: Counter[str] = field(default_factory=Counter)
    duration_us: Counter[str] = field(default_factory=Counter)

    @property
    def command_count(self) -> int:
        return sum(self.commands.values())


class RedisTraffic:
    """Counts redis-py request flights: one ``send_packed_command`` is one round trip.

    A pipeline is one flight however many commands it carries; a health-check PING or a
    ``SCRIPT EXISTS`` before a pipeline is a flight of its own. Patches the connection class only
    inside :meth:`counting`, so timed runs are not slowed by the bookkeeping.
    """

    def __init__(self) -> None:
        self.traffic = Traffic()

    @contextmanager
    def counting(self) -> Iterator[Traffic]:
        self.traffic = Traffic()
        traffic = self.traffic
        connection_class: Any = redis.connection.AbstractConnection
        original_send_packed = connection_class.send_packed_command
        original_send = connection_class.send_command
        original_pack_many = connection_class.pack_commands

        def send_packed_command(self: Any, command: Any, check_health: bool = True) -> Any:
            traffic.round_trips += 1
            return original_send_packed(self, command, check_health)

        def send_command(self: Any, *args: Any, **kwargs: Any) -> Any:
            # A single command (a health-check PING included); it goes on through send_packed_command.
            traffic.commands[_command_name(args)] += 1
            return original_send(self, *args, **kwargs)

        def pack_commands(self: Any, commands: Any) -> Any:
            # A pipeline: packed here, sent in one send_packed_command.
            commands = list(commands)
            for args in commands:
                traffic.commands[_command_name(args)] += 1
            return original_pack_many(self, commands)

        connection_class.send_packed_command = send_packed_command
        connection_class.send_command = send_command
        connection_class.pack_commands = pack_commands
        try:
            yield traffic
        finally:
            connection_class.send_packed_command = original_send_packed
            connection_class.send_command = original_send
            connection_class.pack_commands = original_pack_many


def _command_name(args: Sequence[Any]) -> str:
    if not args:
        return "?"
    first = args[0]
    name = first.decode() if isinstance(first, bytes) else str(first)
    return name.upper()


class MongoCommands(pymongo.monitoring.CommandListener):
    """Counts MongoDB commands (each is one round trip) while :meth:`counting` is active.

    Register it with :func:`pymongo.monitoring.register` before any client is created: clients pick up
    global listeners when they are built.
    """

    def __init__(self) -> None:
        self.traffic = Traffic()
        self._active = False

    @contextmanager
    def counting(self) -> Iterator[Traffic]:
        self.traffic = Traffic()
        self._active = True
        try:
            yield self.traffic
        finally:
            self._active = False

    def started(self, event: pymongo.monitoring.CommandStartedEvent) -> None:
        if not self._active:
            return
        name = event.command_name
        self.traffic.round_trips += 1
        self.traffic.commands[name] += 1
        # A write command carries many statements (documents, updates, deletes) in one round trip.
        for field_name in ("documents", "updates", "deletes"):
            payload = event.command.get(field_name)
            if isinstance(payload, list):
                self.traffic.statements[name] += len(payload)

    def succeeded(self, event: pymongo.monitoring.CommandSucceededEvent) -> None:
        if self._active:
            self.traffic.duration_us[event.command_name] += event.duration_micros

    def failed(self, event: pymongo.monitoring.CommandFailedEvent) -> None:
        if self._active:
            self.traffic.duration_us[f"{event.command_name} (failed)"] += event.duration_micros
