"""Trust: nothing unpickles, runs remote code or leaks a token; reports escape what users named; the App
warns when it leaves localhost."""

import ast
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from curate.cli import cli
from reliability_helpers import EMBED, PROBE_AUDIT, QUALITY_INDEX_DUPLICATES, folder_recipe

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("curate", "audits", "synth")


def calls():
    """(file:line, ast.Call) of every call in the packages' sources."""
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                if isinstance(node, ast.Call):
                    yield f"{path.relative_to(REPO)}:{node.lineno}", node


def name_of(func: ast.expr) -> str:
    return ast.unparse(func)


def keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_no_unsafe_deserialization_or_remote_code_in_the_packages():
    problems = []
    for where, call in calls():
        func = name_of(call.func)
        if func == "torch.load":
            value = keyword(call, "weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                problems.append(f"{where}: torch.load without weights_only=True")
        if func in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "pickle.load", "pickle.loads",
                    "dill.load", "cloudpickle.load", "eval", "exec"):
            problems.append(f"{where}: {func}")
        allow = keyword(call, "allow_pickle")
        if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
            problems.append(f"{where}: allow_pickle is not False")
        remote = keyword(call, "trust_remote_code")
        if remote is not None and not (isinstance(remote, ast.Constant) and remote.value is False):
            problems.append(f"{where}: trust_remote_code is not False")
        if keyword(call, "custom_pipeline") is not None:
            problems.append(f"{where}: a diffusers custom_pipeline runs downloaded code")
    assert not problems, "\n".join(problems)


def test_the_scan_sees_what_it_refuses(tmp_path, monkeypatch):
    """The scan itself: an unsafe call in a package file is reported."""
    bad = "import torch, yaml\n{0}.load('x')\n{1}.load('y')\nf(trust_remote_code=True)\n".format("torch", "yaml")
    tree = ast.parse(bad)
    found = [name_of(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert {"torch.load", "yaml.load"} <= set(found)
    remote = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and name_of(n.func) == "f")
    assert keyword(remote, "trust_remote_code").value is True


@pytest.mark.parametrize("address, warns", [("127.0.0.1", False), ("localhost", False), ("::1", False),
                                             ("0.0.0.0", True), ("192.168.1.20", True), ("my-host", True)])
def test_the_app_warns_when_it_is_reachable_from_the_network(address, warns, monkeypatch, caplog, fo):
    from curate.fo import app

    if not fo.dataset_exists("trust-app"):
        fo.Dataset("trust-app", persistent=True)
    monkeypatch.setattr(app, "_start_server", lambda **kwargs: None)
    monkeypatch.setattr(app, "_wait_for_http_ok", lambda *args, **kwargs: None)
    monkeypatch.setattr(app, "_check_port_free", lambda *args, **kwargs: None)
    with caplog.at_level(logging.WARNING, logger="curate.fo.app"):
        handle = app.launch_app("trust-app", port=5151, address=address)
    assert handle.url.startswith("http://")
    assert ("no login" in caplog.text) is warns


HOSTILE_CLASS = "<img src=x onerror=alert(1)>"
HOSTILE_FILE = "\"><svg onload=alert(2)>.png"
TOKEN = "hf_fakeTokenThatMustNeverBeWritten42"

EXPORT = """\
  - id: export
    uses: export
    inputs: {data: images}
    with: {license: other}
"""


def test_reports_escape_user_names_and_no_token_is_written(tmp_path, monkeypatch):
    """Class and file names are user input: every HTML page shows them escaped; a token in the environment
    appears in no file of the run."""
    rng = np.random.default_rng(0)
    root = tmp_path / "pics"
    for name in (HOSTILE_CLASS, "cat & \"dog\""):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / name / f"{i}.png")
    (root / HOSTILE_CLASS / HOSTILE_FILE).write_bytes((root / HOSTILE_CLASS / "0.png").read_bytes())
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    recipe = tmp_path / "hostile.yaml"
    recipe.write_text(folder_recipe("hostile", root, EMBED, PROBE_AUDIT, QUALITY_INDEX_DUPLICATES, EXPORT))
    result = CliRunner().invoke(cli, ["run", str(recipe), "--workdir", str(tmp_path / "runs"), "--quiet"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "hostile"
    pages = sorted(run.rglob("*.html"))
    assert {p.relative_to(run).parts[0] for p in pages} >= {"audit", "quality", "duplicates"}, pages
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "onerror=alert(1)>" not in text and "<svg onload" not in text, page
    assert any("&lt;img src=x onerror=alert(1)&gt;" in p.read_text(encoding="utf-8") for p in pages)
    for path in run.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in result.output
