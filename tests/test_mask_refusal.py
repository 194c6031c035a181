"""A mask placeholder never replaces a secret the gateway can open: the one rule (and
the one refusal, naming the key path and the fix) for a secret leaf and for a secret
element of a list (`ledger.typed.masks`)."""

from __future__ import annotations

from typing import Any

from tests.operator import cli

FOREIGN = "<secret fp:0123456789abcdef>"  # a placeholder of a value this ledger never held


def test_a_foreign_mask_is_refused_in_one_wording_for_a_leaf_and_a_list(capsys: Any) -> None:
    cli(capsys, "set", "providers.openai.api_key", "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1w")
    cli(capsys, "set", "mcp.servers.gh.args", '["--api-key", "sk-Zz9yXw8vUt7sRq6pOn5mLk4jIh3g"]')
    _, leaf = cli(capsys, "set", "providers.openai.api_key", FOREIGN, code=1)
    _, element = cli(capsys, "set", "mcp.servers.gh.args", f'["--api-key", "{FOREIGN}"]',
                     code=1)
    for err, path in ((leaf, "providers.openai.api_key"), (element, "mcp.servers.gh.args")):
        assert f"{path}: {FOREIGN} is a placeholder for a secret" in err, err
        assert "a placeholder never replaces a stored secret" in err, err
        assert "Write the value itself" in err and f"moltis-ledger get {path}" in err, err
    def refusal(err: str, path: str) -> str:
        line = next(line for line in err.splitlines() if line.startswith("error:"))
        return line.replace(path, "P").split("to keep it")[0]  # the CLI may add its hint

    assert refusal(leaf, "providers.openai.api_key") == refusal(element, "mcp.servers.gh.args")
