"""phaser policy list|show|promote|rollback|unpin: see and steer the checkpoint store.

Every change is written to the store's pointer (``current.json``) and, when a
broker is given (``--bootstrap`` / PHASER_BOOTSTRAP), published as a
``PolicyUpdate`` on ``policy-updates`` so running routers switch at once.
Without a broker the pointer still changes and routers pick it up at their
next start.
"""

from __future__ import annotations

import json

import typer

from phaser.cli._stack import TimeScaleOpt, TopicPrefixOpt
from phaser.errors import PhaserError

StoreOpt = typer.Option(..., "--store", envvar="PHASER_CHECKPOINTS", help="Checkpoint store directory (shared by trainer and router).")
PublishBootstrapOpt = typer.Option(
    None, "--bootstrap", envvar="PHASER_BOOTSTRAP",
    help="Kafka bootstrap servers; if set, the change is also published on policy-updates for live routers.",
)


def _version(spec: str, flag: str = "VERSION") -> int:
    """``3``, ``v3`` or ``v000003`` (as `phaser policy list` prints it) -> 3."""
    t = spec.strip().lower().removeprefix("v")
    if not t.isdigit():
        raise PhaserError(f"bad {flag} {spec!r}: use a version number such as 3 or v3")
    return int(t)


def _store(path: str):
    """The store at ``path``; a path that does not exist is an error (not an empty store)."""
    from pathlib import Path

    from phaser.versions.store import CheckpointStore

    if not Path(path).is_dir():
        raise PhaserError(f"no checkpoint store at {path} (not a directory)")
    return CheckpointStore(path)


class _Broadcast:
    """The connection a change is published on, opened (and the broker checked) before the
    store changes: an unreachable broker leaves ``current.json`` as it was. Creates only
    ``policy-updates`` when missing (never ``assignments``: its partitions are the cluster's)."""

    def __init__(self, bootstrap: str | None, topic_prefix: str):
        self.bootstrap, self.prefix = bootstrap, topic_prefix
        self._loop = self._producer = None

    def __enter__(self):
        if not self.bootstrap:
            return self
        import asyncio

        from aiokafka.errors import KafkaError

        from services.kafka import Topics, _kafka_error, create_topics, make_producer

        self._loop = asyncio.new_event_loop()
        self.topics = Topics(self.prefix)

        async def _open():
            await create_topics(self.bootstrap, {self.topics.name("policy-updates"): 1})
            p = make_producer(self.bootstrap, client_id="phaser-policy")
            await p.start()
            return p

        try:
            self._producer = self._loop.run_until_complete(_open())
        except KafkaError as e:
            self._loop.close()
            raise _kafka_error(self.bootstrap, e) from None
        return self

    def send(self, upd) -> bool:
        if self._producer is None:
            return False
        from services.kafka import Publisher

        async def _send():
            pub = Publisher(self._producer, self.topics, source="phaser-policy")
            await pub.send("policy-updates", upd)
            await pub.flush()
            if pub.refused:
                raise PhaserError(f"the broker refused the {upd.kind} event; the store changed, routers switch at their next start")

        self._loop.run_until_complete(_send())
        return True

    def __exit__(self, *exc):
        if self._producer is not None:
            self._loop.run_until_complete(self._producer.stop())
            self._loop.close()
        return False


def _update(kind: str, version: int, path: str, checksum: str, reason: str, time_scale: float, stats=None):
    from protos.messages import PolicyUpdate
    from services.clock import StackClock

    return PolicyUpdate(kind=kind, version=version, path=path, checksum=checksum, reason=reason,
                        ts_s=StackClock(time_scale).now(), stats=stats or {})


def register(app: typer.Typer) -> None:
    grp = typer.Typer(help="List, inspect, promote, pin and roll back policy versions in a checkpoint store.",
                      no_args_is_help=True)
    app.add_typer(grp, name="policy")

    @grp.command("list")
    def list_(store: str = StoreOpt, as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
        """Every version with its training stats; the current one is marked (* current, P pinned)."""
        from rich.console import Console
        from rich.table import Table

        s = _store(store)
        ptr = s.pointer()
        rows = []
        for v in s.versions():
            try:
                meta = json.loads((s.path_of(v) / "metadata.json").read_text())
            except (OSError, ValueError):
                meta = {}
            stats = meta.get("training_stats") or meta.get("stats") or {}
            rows.append({"version": v, "current": v == ptr.version, "pinned": v == ptr.version and ptr.pinned,
                         "variant": meta.get("variant", "?"), "source": meta.get("source", ""),
                         "checksum": str(meta.get("checksum", ""))[:19], "stats": stats})
        if as_json:
            typer.echo(json.dumps({"current": ptr.to_json(), "versions": rows}, indent=1))
            return
        t = Table(title=f"policy versions in {store}")
        for col in ("", "version", "variant", "source", "checksum", "stats"):
            t.add_column(col)
        for r in rows:
            mark = ("*" if r["current"] else "") + ("P" if r["pinned"] else "")
            st = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(r["stats"].items())[:5])
            t.add_row(mark, f"v{r['version']}", r["variant"], r["source"], r["checksum"], st)
        Console().print(t)
        if ptr.version is None:
            typer.echo("no current version yet (routers serve their fallback policy)")
        else:
            typer.echo(f"current: v{ptr.version}{' (pinned)' if ptr.pinned else ''} — {ptr.reason}")

    @grp.command("show")
    def show(version: str = typer.Argument(..., help="Version: 3 or v3 (as `phaser policy list` prints it)."), store: str = StoreOpt):
        """Verify one version's checksum and print its metadata."""
        c = _store(store).load(_version(version))  # PhaserError if tampered
        meta = dict(c.metadata)
        meta.pop("feature_spec", None)
        typer.echo(json.dumps({"path": str(c.path), "checksum_ok": True, **meta}, indent=1, sort_keys=True))

    @grp.command("promote")
    def promote(version: str = typer.Argument(..., help="Version to serve: 3 or v3."), store: str = StoreOpt,
                pin: bool = typer.Option(False, "--pin", help="Pin it: routers ignore the trainer's new versions until unpinned."),
                reason: str = typer.Option("operator promotion", "--reason", help="Why (recorded in the pointer and the event)."),
                bootstrap: str | None = PublishBootstrapOpt, topic_prefix: str = TopicPrefixOpt,
                time_scale: float = TimeScaleOpt):
        """Make VERSION current (verified first); live routers switch to it without a canary."""
        version = _version(version)
        s = _store(store)
        c = s.load(version)  # refuse to promote a tampered version
        with _Broadcast(bootstrap, topic_prefix) as b:  # the broker first: unreachable -> nothing changes
            s.promote(version, reason, pin=pin)
            sent = b.send(_update("pinned" if pin else "promoted", version, str(c.path), c.checksum, reason, time_scale))
        typer.echo(f"v{version} is current{' and pinned' if pin else ''}{' (published)' if sent else ''}")

    @grp.command("rollback")
    def rollback(store: str = StoreOpt, to: str | None = typer.Option(None, "--to", help="Version to go back to: 3 or v3 (default: the previous current)."),
                 reason: str = typer.Option("operator rollback", "--reason", help="Why (recorded in the pointer and the event)."),
                 bootstrap: str | None = PublishBootstrapOpt, topic_prefix: str = TopicPrefixOpt,
                time_scale: float = TimeScaleOpt):
        """Withdraw the current version and serve the previous one (or --to)."""
        s = _store(store)
        if to is not None:
            to = _version(to, "--to")
            s.load(to)
        with _Broadcast(bootstrap, topic_prefix) as b:
            withdrawn, ptr = s.rollback(reason, to=to)
            c = s.load(ptr.version)
            sent = b.send(_update("rolled_back", withdrawn, str(c.path), c.checksum, reason,
                                  time_scale, {"to_version": float(ptr.version)}))
        typer.echo(f"v{withdrawn} withdrawn; v{ptr.version} is current{' (published)' if sent else ''}")

    @grp.command("unpin")
    def unpin(store: str = StoreOpt, bootstrap: str | None = PublishBootstrapOpt, topic_prefix: str = TopicPrefixOpt,
                time_scale: float = TimeScaleOpt):
        """Let routers take the trainer's new versions again (through the canary)."""
        s = _store(store)
        with _Broadcast(bootstrap, topic_prefix) as b:
            ptr = s.unpin("operator unpin")
            if ptr.version is None:
                raise PhaserError(f"no current version in {store}")
            c = s.load(ptr.version)
            sent = b.send(_update("promoted", ptr.version, str(c.path), c.checksum, "operator unpin", time_scale))
        typer.echo(f"v{ptr.version} is current and unpinned{' (published)' if sent else ''}")
