"""A profile's unknown top-level key with no close match lists the keys a profile file may have: the
document's keys, not the Profile dataclass's fields, two of which (path, host) deploytool sets itself and
refuses in a file. Before, `extends: base` was answered '(allowed: name, ..., schema_version, path, host)'."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.profiles import BUILTIN_PROFILE_DIR

ALLOWED = ("(allowed: schema_version, name, description, soc, arch, cpu, features, memory_gb, compute, "
           "execution_providers, threads, budgets, sources, qemu_cpu, npu)")


@pytest.mark.parametrize("line, key", [("extends: kirin990", "extends"), ("include: other.yaml", "include"),
                                       ("path: /elsewhere.yaml", "path"), ("host: {cpu: fake}", "host")])
def test_unknown_key_lists_only_keys_a_file_may_have(tmp_path, line, key):
    text = (BUILTIN_PROFILE_DIR / "kirin990.yaml").read_text().replace("name: kirin990", "name: board")
    f = tmp_path / "board.yaml"
    f.write_text(text + line + "\n")
    res = CliRunner().invoke(main, ["profiles", "show", str(f)])
    assert res.exit_code == 2
    assert res.output == f"error: {f}: {key}: unknown key {ALLOWED}\n"


def test_close_typo_still_gets_a_did_you_mean(tmp_path):
    text = (BUILTIN_PROFILE_DIR / "kirin990.yaml").read_text().replace("name: kirin990", "name: board")
    f = tmp_path / "board.yaml"
    f.write_text(text.replace("\nthreads: 4", "\nthread: 4"))
    res = CliRunner().invoke(main, ["profiles", "show", str(f)])
    assert res.exit_code == 2 and res.output == f"error: {f}: thread: unknown key (did you mean 'threads'?)\n"
