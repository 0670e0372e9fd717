"""report's reading of a bench JSON that is not an object or has no schema: a JSON list was answered
"schema 'list' is not 'deploytool.bench/1'" (its Python type named as a schema), an object without the key
"schema None is not ...". Each is named for what it is now."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from deploytool.cli import main


@pytest.mark.parametrize("text, expected", [
    ("[1]", "expected a JSON object (a deploytool bench result, schema deploytool.bench/1), got list"),
    ("3", "expected a JSON object (a deploytool bench result, schema deploytool.bench/1), got int 3"),
    ('{"a": 1}', "no 'schema' key; not a deploytool bench result (schema deploytool.bench/1)"),
    ('{"schema": "other/2"}', "schema 'other/2' is not 'deploytool.bench/1'; not a deploytool bench result"),
])
def test_report_names_what_the_results_file_is(tmp_path, text, expected):
    f = tmp_path / "b.json"
    f.write_text(text)
    res = CliRunner().invoke(main, ["report", str(f), "-o", str(tmp_path / "r")])
    assert res.exit_code == 2 and res.output == f"error: {f}: {expected}\n"
    assert not (tmp_path / "r").exists()
