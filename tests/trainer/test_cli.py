"""`phaser policy` and `phaser trainer` on the command line: the store as an operator sees it."""

from __future__ import annotations

import json

from phaser.cli.main import main


def test_policy_list_show_promote_rollback(publish_fixed, store, capsys):
    publish_fixed(0)
    publish_fixed(1)
    root = str(store.root)
    assert main(["policy", "promote", "1", "--store", root]) == 0
    assert main(["policy", "promote", "2", "--store", root, "--pin", "--reason", "best so far"]) == 0
    capsys.readouterr()
    assert main(["policy", "list", "--store", root, "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["current"]["version"] == 2 and listing["current"]["pinned"]
    assert [r["version"] for r in listing["versions"]] == [1, 2]
    assert main(["policy", "show", "2", "--store", root]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["checksum_ok"] and shown["version"] == 2
    assert main(["policy", "rollback", "--store", root]) == 0
    assert "v2 withdrawn; v1 is current" in capsys.readouterr().out
    assert store.pointer().version == 1


def test_user_mistakes_are_one_line_errors(publish_fixed, store, capsys):
    root = str(store.root)
    store.root.mkdir(parents=True, exist_ok=True)  # an empty store (a missing one is its own error: tests/cli)
    assert main(["policy", "promote", "9", "--store", root]) == 2
    assert "no version v9" in capsys.readouterr().err
    _, path, _ = publish_fixed(0)
    (path / "weights.safetensors").write_bytes(b"garbage")
    assert main(["policy", "show", "1", "--store", root]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "checksum" in err and err.count("\n") == 1
    assert main(["policy", "rollback", "--store", root]) == 2
    assert main(["trainer", "--store", root, "--publish-every-updates", "0"]) == 2
